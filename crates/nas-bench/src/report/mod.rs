//! Reports: of one stored study (`nas report`) and of a benchmark suite (`nas benchmark`):
//! CSV and markdown tables, SVG plots, anytime curves and their statistics.

pub mod bench;
pub mod curves;
pub mod plot;
pub mod stats;
pub mod study;
pub mod supernet;
pub mod table;

pub use bench::write_bench_report;
pub use study::write_study_report;
