//! Benchmark suites, reports of studies and suites (CSV, SVG, markdown), and tabular-benchmark
//! builds; all of them drive the engine of nas-core and add nothing to it.

pub mod benchmark;
pub mod report;
pub mod tabulate;
