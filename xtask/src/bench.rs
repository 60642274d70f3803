//! `cargo xtask bench-loop`: the engine's own cost per trial. A study whose only evaluator
//! counts parameters runs N/10 and N trials; the difference in wall time divided by the extra
//! trials is the marginal per-trial overhead (start-up cost cancels out), and similar peak RSS
//! for both runs shows memory stays flat as the study grows.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::{cargo, provision_cpu, run};

pub const CONFIG: &str = "configs/bench/loop.toml";

/// Written to configs/bench/loop.toml when it is missing.
pub const DEFAULT_CONFIG: &str = r#"# Engine overhead per trial: `cargo xtask bench-loop [--trials N]`.
# The only evaluator counts parameters (no ONNX Runtime session), so the time measured is the
# search loop itself: asking the strategy, decoding, deduplication, storage and telling.
[study]
name = "loop"
seed = 1
directory = "runs/bench-loop"

[budget]
trials = 10000

[space]
kind = "chain"                 # a space far larger than the budget: no exhaustion

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"

[objective]
minimize = "params"
"#;

/// One measured child process.
#[derive(Debug)]
struct Measured {
    wall: Duration,
    max_rss_kib: u64,
}

/// `base` with `[budget] trials` set to `trials` (the CLI overrides only the study folder).
pub fn with_trials(base: &str, trials: u64) -> String {
    let mut out = Vec::new();
    let mut in_budget = false;
    let mut done = false;
    for line in base.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_budget && !done {
                out.push(format!("trials = {trials}"));
                done = true;
            }
            in_budget = t == "[budget]";
        } else if in_budget && !done {
            let key = t.split('=').next().unwrap_or("").trim();
            if key == "trials" {
                out.push(format!("trials = {trials}"));
                done = true;
                continue;
            }
        }
        out.push(line.to_string());
    }
    if !done {
        if !in_budget {
            out.push(String::new());
            out.push("[budget]".into());
        }
        out.push(format!("trials = {trials}"));
    }
    out.join("\n") + "\n"
}

/// Runs `cmd` with stdout/stderr in `log` and returns its wall time and peak RSS (wait4).
// The peak memory of a child process needs wait4's rusage (std has no safe wrapper).
#[allow(unsafe_code)]
fn measure(cmd: &mut Command, log: &Path) -> Result<Measured> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let line = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {line}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, status and usage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("waiting for {line}"));
        }
    }
    let wall = start.elapsed();
    // The child is reaped; `Child` does not wait on drop.
    drop(child);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{line} failed (wait status {status}); last lines of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(Measured {
        wall,
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

pub fn bench_loop(root: &Path, target: &Path, trials: u64) -> Result<()> {
    if trials < 10 {
        bail!("--trials must be at least 10 (the short run has trials / 10), got {trials}");
    }
    let small = trials / 10;
    let library = provision_cpu(target)?;
    run(cargo(root).args(["build", "--release", "--workspace"]))?;
    let nas = target.join("release/nas");
    if !nas.is_file() {
        bail!(
            "{} was not built; check `cargo build --release --workspace`",
            nas.display()
        );
    }

    let config = root.join(CONFIG);
    if !config.is_file() {
        std::fs::create_dir_all(config.parent().expect("config has a folder"))?;
        std::fs::write(&config, DEFAULT_CONFIG)
            .with_context(|| format!("cannot write {}", config.display()))?;
        eprintln!("wrote {}", config.display());
    }
    let base = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;

    let work = target
        .join("bench-loop")
        .join(format!("run-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let mut runs = Vec::new();
    for n in [small, trials] {
        let cfg = work.join(format!("loop-{n}.toml"));
        std::fs::write(&cfg, with_trials(&base, n))?;
        let study = work.join(format!("study-{n}"));
        eprintln!("running {n} trials ...");
        let m = measure(
            Command::new(&nas)
                .current_dir(root)
                .arg("search")
                .arg(&cfg)
                .arg("--study-dir")
                .arg(&study)
                .env("ORT_DYLIB_PATH", &library),
            &work.join(format!("search-{n}.log")),
        )
        .with_context(|| {
            format!(
                "the {n}-trial run failed; its files are kept in {}",
                work.display()
            )
        })?;
        eprintln!(
            "  {n} trials: {:.2} s, peak RSS {:.1} MiB",
            m.wall.as_secs_f64(),
            m.max_rss_kib as f64 / 1024.0
        );
        runs.push((n, m));
    }

    let summary = summarize(&runs, trials);
    print!("{summary}");
    let out = root.join("results/bench-loop");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = out.join("summary.md");
    std::fs::write(&file, &summary).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

fn summarize(runs: &[(u64, Measured)], trials: u64) -> String {
    let (small_n, small) = &runs[0];
    let (big_n, big) = &runs[1];
    let extra = (*big_n - *small_n) as f64;
    let overhead_ms = (big.wall.as_secs_f64() - small.wall.as_secs_f64()) * 1e3 / extra;
    let mib = |k: u64| k as f64 / 1024.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Engine overhead per trial (`cargo xtask bench-loop --trials {trials}`)\n"
    );
    let _ = writeln!(
        s,
        "Study `{CONFIG}`: `chain` space, `random` strategy, `cost` evaluator counting parameters \
         only (no ONNX Runtime session). Release build, fresh study folder per run.\n"
    );
    let _ = writeln!(
        s,
        "| trials | wall time (s) | time per trial (ms) | peak RSS (MiB) |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|");
    for (n, m) in runs {
        let _ = writeln!(
            s,
            "| {n} | {:.3} | {:.4} | {:.1} |",
            m.wall.as_secs_f64(),
            m.wall.as_secs_f64() * 1e3 / *n as f64,
            mib(m.max_rss_kib)
        );
    }
    let _ = writeln!(
        s,
        "\n- Per-trial overhead (t_{big_n} - t_{small_n}) / {extra}: **{overhead_ms:.4} ms**"
    );
    let short_avg_ms = small.wall.as_secs_f64() * 1e3 / *small_n as f64;
    let _ = writeln!(
        s,
        "- Growth: the marginal overhead is {:.1}x the {small_n}-trial run's average of {short_avg_ms:.4} ms \
         (about 1x: constant work per trial; well above: work per trial grows with the study)",
        overhead_ms / short_avg_ms
    );
    let _ = writeln!(
        s,
        "- Peak RSS: {:.1} MiB at {small_n} trials, {:.1} MiB at {big_n} trials ({:+.1} MiB; \
         similar values mean memory stays flat as the study grows)",
        mib(small.max_rss_kib),
        mib(big.max_rss_kib),
        mib(big.max_rss_kib) - mib(small.max_rss_kib)
    );
    let _ = writeln!(
        s,
        "- Machine: {} {}, {} CPUs; measured {}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        utc_now()
    );
    s
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate (days-to-civil, proleptic Gregorian).
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_the_trial_budget() {
        let out = with_trials(DEFAULT_CONFIG, 1000);
        assert!(out.contains("[budget]\ntrials = 1000\n"), "{out}");
        assert!(!out.contains("10000"));
        assert_eq!(out.matches("trials =").count(), 1);
    }

    #[test]
    fn adds_a_missing_budget() {
        let out = with_trials("[study]\nname = \"x\"\n", 7);
        assert!(out.ends_with("[budget]\ntrials = 7\n"), "{out}");
        let out = with_trials("[budget]\nseconds = 5\n[space]\nkind = \"cell\"\n", 7);
        assert!(
            out.contains("[budget]\nseconds = 5\ntrials = 7\n[space]"),
            "{out}"
        );
        let out = with_trials("[budget]\n", 3);
        assert_eq!(out, "[budget]\ntrials = 3\n");
    }

    #[test]
    fn the_checked_in_config_is_the_default() {
        let file = crate::repo_root().join(CONFIG);
        assert_eq!(std::fs::read_to_string(file).unwrap(), DEFAULT_CONFIG);
    }

    #[test]
    fn measures_a_child() {
        let log = std::env::temp_dir().join(format!("xtask-measure-{}.log", std::process::id()));
        let m = measure(Command::new("sh").args(["-c", "echo hi; sleep 0.05"]), &log).unwrap();
        assert!(m.wall >= Duration::from_millis(50));
        assert!(m.max_rss_kib > 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hi\n");
        let err = measure(Command::new("sh").args(["-c", "echo boom; exit 3"]), &log).unwrap_err();
        assert!(format!("{err:#}").contains("boom"), "{err:#}");
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn formats_dates() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-11-28 12:00 UTC".len(), "{d}");
        assert!(d.starts_with("20"), "{d}");
    }

    #[test]
    fn summary_reports_marginal_overhead() {
        let runs = vec![
            (
                100,
                Measured {
                    wall: Duration::from_millis(1100),
                    max_rss_kib: 10_240,
                },
            ),
            (
                1000,
                Measured {
                    wall: Duration::from_millis(2000),
                    max_rss_kib: 11_264,
                },
            ),
        ];
        let s = summarize(&runs, 1000);
        assert!(s.contains("**1.0000 ms**"), "{s}");
        assert!(s.contains("+1.0 MiB"), "{s}");
        assert!(
            s.contains("0.1x the 100-trial run's average of 11.0000 ms"),
            "{s}"
        );
    }
}
