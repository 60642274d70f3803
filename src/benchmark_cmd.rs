//! `nas benchmark SUITE`: run a benchmark suite (many real studies) and write its report.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nas_bench::benchmark::{self, BenchObserver, Options, Suite};
use nas_bench::report::bench::BenchRun;

/// Prints one line per finished study (at most a few per second on big suites).
struct Printer {
    last: Mutex<Option<std::time::Instant>>,
}

impl BenchObserver for Printer {
    fn note(&self, message: &str) {
        eprintln!("{message}");
    }

    fn run_finished(&self, done: usize, total: usize, suite: &Suite, run: &BenchRun) {
        let mut last = self.last.lock().expect("printer lock");
        let now = std::time::Instant::now();
        let due = last.is_none_or(|t| now.duration_since(t).as_secs_f64() >= 0.25);
        if !(due || done == total) {
            return;
        }
        *last = Some(now);
        let evaluated = run.trials.iter().filter(|t| t.evaluated()).count();
        eprintln!(
            "[{done:>5}/{total}] {} / {} / seed {}: {evaluated} trials in {:.2} s ({})",
            suite.methods[run.method].name,
            suite.datasets[run.dataset].info.name,
            run.seed,
            run.wall_seconds,
            run.stop_reason
        );
    }
}

pub fn benchmark(
    suite: &Path,
    seeds: Option<usize>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let options = Options { seeds, jobs, out };
    let printer = Printer {
        last: Mutex::new(None),
    };
    let outcome = benchmark::run(suite, &options, &printer)?;
    eprintln!(
        "{} studies in {:.1} s; results in {}",
        outcome.bench.runs.len(),
        outcome.bench.wall_seconds,
        outcome.out.display()
    );
    let summary = outcome.out.join("summary.md");
    if let Ok(text) = std::fs::read_to_string(&summary) {
        print!("{text}");
    }
    println!("files:");
    for f in &outcome.files {
        println!("  {}", f.display());
    }
    Ok(())
}
