//! Plain-text tables: CSV (RFC 4180 quoting, by the `csv` crate) and GitHub-flavoured
//! markdown, plus number formatting shared by the reports.

use std::fmt::Write as _;

/// A CSV document built row by row in memory; fields are quoted only when they hold a comma,
/// a quote or a line break.
#[derive(Debug)]
pub struct Csv {
    writer: csv::Writer<Vec<u8>>,
}

impl Csv {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Csv {
        let mut csv = Csv {
            writer: csv::Writer::from_writer(Vec::new()),
        };
        csv.row(header);
        csv
    }

    /// Appends a row; a row of the wrong width is a bug in the caller.
    pub fn row<S: AsRef<str>>(&mut self, fields: &[S]) {
        self.writer
            .write_record(fields.iter().map(|f| f.as_ref()))
            .expect("a CSV row as wide as the header, written to memory");
    }

    pub fn into_string(self) -> String {
        let bytes = self
            .writer
            .into_inner()
            .expect("writing CSV to memory cannot fail");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }
}

/// A CSV number: full precision (shortest round-trip form), empty when absent or not finite.
pub fn csv_number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

/// A markdown table; `|` in cells is escaped and line breaks become spaces.
pub fn markdown_table<S: AsRef<str>>(header: &[S], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| cell(h.as_ref())).collect();
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A metric value for people: integers for counts, 4 significant decimals otherwise.
pub fn human_number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.1}")
    } else if a >= 1e-4 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut csv = Csv::new(&["id", "arch", "note"]);
        csv.row(&["1", "|nor_conv_3x3~0|+|none~0|", "plain"]);
        csv.row(&["2", "a,b", "say \"hi\"\nthere"]);
        csv.row(&["3", "", "carriage\rreturn"]);
        assert_eq!(
            csv.into_string(),
            "id,arch,note\n1,|nor_conv_3x3~0|+|none~0|,plain\n2,\"a,b\",\"say \"\"hi\"\"\nthere\"\n3,,\"carriage\rreturn\"\n"
        );
    }

    #[test]
    #[should_panic(expected = "as wide as the header")]
    fn a_row_of_another_width_is_refused() {
        let mut csv = Csv::new(&["id", "arch"]);
        csv.row(&["1"]);
    }

    #[test]
    fn csv_numbers_keep_precision_and_drop_non_finite() {
        assert_eq!(csv_number(Some(0.9437)), "0.9437");
        assert_eq!(csv_number(Some(3.0)), "3");
        assert_eq!(csv_number(Some(f64::NAN)), "");
        assert_eq!(csv_number(None), "");
    }

    #[test]
    fn markdown_escapes_pipes() {
        let t = markdown_table(
            &["method", "arch"],
            &[vec!["REA".into(), "|skip_connect~0|".into()]],
        );
        assert_eq!(
            t,
            "| method | arch |\n|---|---|\n| REA | \\|skip_connect~0\\| |\n"
        );
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human_number(412346.0), "412346");
        assert_eq!(human_number(0.93456), "0.9346");
        assert_eq!(human_number(1234.5678), "1234.6");
        assert_eq!(human_number(0.00001234), "1.234e-5");
    }
}
