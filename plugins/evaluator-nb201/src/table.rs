//! The embedded NAS-Bench-201 tables (see `data/README.md`), parsed once per process into one
//! map from arch string to row.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use flate2::read::GzDecoder;

/// 200-epoch mean test accuracy (%), all three datasets.
const TEST_200: &[u8] = include_bytes!("../data/nb201_test_accuracy.csv.gz");
/// 12-epoch validation and test accuracy (%), all three datasets.
const EPOCH_12: &[u8] = include_bytes!("../data/nb201_12epoch.csv.gz");

/// Number of cells in the NB201 space: 5 ops on each of 6 edges.
pub const CELLS: usize = 15_625;

/// A dataset of the benchmark; its index selects the column of a [`Row`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    Cifar10,
    Cifar100,
    ImageNet16_120,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Cifar10, Dataset::Cifar100, Dataset::ImageNet16_120];

    /// The config spelling (NB201's own names).
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::ImageNet16_120 => "ImageNet16-120",
        }
    }

    /// Case-insensitive, so `imagenet16-120` works too.
    pub fn parse(name: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn classes(self) -> usize {
        match self {
            Dataset::Cifar10 => 10,
            Dataset::Cifar100 => 100,
            Dataset::ImageNet16_120 => 120,
        }
    }

    /// Per-sample input of the benchmark network.
    pub fn input(self) -> [usize; 3] {
        match self {
            Dataset::Cifar10 | Dataset::Cifar100 => [3, 32, 32],
            Dataset::ImageNet16_120 => [3, 16, 16],
        }
    }

    /// Training images per epoch in the cost model: the full training sets (CIFAR 50,000;
    /// ImageNet16-120 151,700 as in the NB201 paper).
    pub fn train_samples(self) -> f64 {
        match self {
            Dataset::Cifar10 | Dataset::Cifar100 => 50_000.0,
            Dataset::ImageNet16_120 => 151_700.0,
        }
    }
}

/// One architecture's accuracies as FRACTIONS 0..1, indexed by [`Dataset::index`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// Mean test accuracy after 200 epochs.
    pub test_200: [f64; 3],
    /// Validation accuracy after 12 epochs.
    pub val_12: [f64; 3],
    /// Test accuracy after 12 epochs.
    pub test_12: [f64; 3],
}

pub struct Table {
    rows: HashMap<Box<str>, Row>,
}

impl Table {
    pub fn get(&self, arch: &str) -> Option<&Row> {
        self.rows.get(arch)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Row)> {
        self.rows.iter().map(|(k, v)| (&**k, v))
    }
}

/// The parsed tables; the first call parses (tens of milliseconds), later calls are free.
pub fn table() -> Result<&'static Table, String> {
    static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse(TEST_200, EPOCH_12))
        .as_ref()
        .map_err(|e| format!("nb201 evaluator: the embedded table is unreadable: {e}"))
}

/// Reads a gzipped CSV: per row, the `key` column and the named accuracy columns as
/// fractions (the files hold percentages).
fn read(
    gz: &[u8],
    file: &str,
    key: &str,
    columns: &[&str],
) -> Result<Vec<(String, Vec<f64>)>, String> {
    let mut text = Vec::new();
    GzDecoder::new(gz)
        .read_to_end(&mut text)
        .map_err(|e| format!("{file}: cannot decompress: {e}"))?;
    let mut reader = csv::Reader::from_reader(text.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| format!("{file}: {e}"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{file}: no column `{name}`"))
    };
    let key_at = column(key)?;
    let value_at = columns
        .iter()
        .map(|c| column(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(CELLS);
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("{file}: {e}"))?;
        let row = line + 2; // 1-based, after the header
        let values = value_at
            .iter()
            .map(|&at| {
                let text = record.get(at).unwrap_or("");
                let pct: f64 = text
                    .parse()
                    .map_err(|_| format!("{file} row {row}: `{text}` is not a number"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("{file} row {row}: {pct} is not a percentage"));
                }
                Ok(pct / 100.0)
            })
            .collect::<Result<Vec<f64>, String>>()?;
        out.push((record.get(key_at).unwrap_or("").to_string(), values));
    }
    Ok(out)
}

fn three(v: &[f64]) -> [f64; 3] {
    [v[0], v[1], v[2]]
}

/// Joins the two tables on the arch string; both must hold the same 15,625 strings.
fn parse(test_200: &[u8], epoch_12: &[u8]) -> Result<Table, String> {
    // Column order = Dataset order.
    let long = read(
        test_200,
        "nb201_test_accuracy.csv",
        "ArchitectureString",
        &[
            "CIFAR10TestAccuracy200Epochs",
            "CIFAR100TestAccuracy200Epochs",
            "ImageNetTestAccuracy200Epochs",
        ],
    )?;
    let short = read(
        epoch_12,
        "nb201_12epoch.csv",
        "cellstr",
        &[
            "cifar10-val",
            "cifar100-val",
            "imagenet-val",
            "cifar10-test",
            "cifar100-test",
            "imagenet-test",
        ],
    )?;
    let mut short: HashMap<String, Vec<f64>> = short.into_iter().collect();
    let mut rows = HashMap::with_capacity(long.len());
    for (arch, test_200) in long {
        let twelve = short
            .remove(&arch)
            .ok_or_else(|| format!("`{arch}` has no 12-epoch row"))?;
        let row = Row {
            test_200: three(&test_200),
            val_12: three(&twelve[..3]),
            test_12: three(&twelve[3..]),
        };
        if rows.insert(arch.clone().into_boxed_str(), row).is_some() {
            return Err(format!("`{arch}` appears twice in the 200-epoch table"));
        }
    }
    if let Some(arch) = short.keys().next() {
        return Err(format!("`{arch}` has no 200-epoch row"));
    }
    if rows.len() != CELLS {
        return Err(format!("{} rows, expected {CELLS}", rows.len()));
    }
    Ok(Table { rows })
}
