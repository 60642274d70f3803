//! The bundled scikit-learn "digits" set: 1797 handwritten digits, 8x8 pixels, values 0..16.
//! Provenance and license: `data/README.md` of this crate.

use std::path::Path;

use crate::dataset::{DataKind, Dataset};
use crate::read::gunzip_if_gz;
use crate::tabular::parse_digits;

/// The gzipped CSV: 1797 rows of 64 pixel values (row-major 8x8) then the label 0..9.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// The digits set has no test part; this fraction is held out as the test set.
pub const DIGITS_TEST_FRACTION: f64 = 0.2;

/// The digits set as images `[1797, 1, 8, 8]` with raw values 0..16 and labels 0..9.
pub fn digits() -> Dataset {
    const BROKEN: &str = "the bundled digits.csv.gz is valid (checked by the crate's tests)";
    let file = Path::new("digits.csv.gz (bundled)");
    let bytes = gunzip_if_gz(DIGITS_CSV_GZ.to_vec(), file).expect(BROKEN);
    let table = parse_digits(&bytes.bytes, file).expect(BROKEN);
    let n = table.len();
    let images = table
        .images
        .into_shape_with_order((n, 1, 8, 8))
        .expect(BROKEN);
    Dataset::with_kind("digits", DataKind::Image, images, table.labels, 10).expect(BROKEN)
}
