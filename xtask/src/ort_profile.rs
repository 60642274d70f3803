//! ONNX Runtime profiler traces (the JSON `SessionOptions::EnableProfiling` writes) summed
//! per op type: where a session's time goes.
//!
//! A trace is an array of Chrome-trace events. Kernel runs are `"cat": "Node"` events named
//! `<node>_kernel_time` with `args.op_name` and `dur` in microseconds; each session run is a
//! `"cat": "Session"` event named `model_run`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The time of one op type over the whole trace.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    pub op: String,
    pub total_ms: f64,
    pub count: usize,
}

/// A trace summed per op type, the slowest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub ops: Vec<OpTime>,
    /// `model_run` events: the session runs the trace covers.
    pub runs: usize,
}

impl Profile {
    /// Kernel time of all ops together.
    pub fn kernel_ms(&self) -> f64 {
        self.ops.iter().map(|o| o.total_ms).sum()
    }

    fn per_run(&self, v: f64) -> f64 {
        v / self.runs.max(1) as f64
    }

    /// Share of the kernel time, in percent.
    pub fn share(&self, op: &OpTime) -> f64 {
        let total = self.kernel_ms();
        if total > 0.0 {
            100.0 * op.total_ms / total
        } else {
            0.0
        }
    }

    /// A markdown table: ms per run, share, kernel calls per run.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Kernel time per op type over {} session runs: {:.2} ms of kernels per run.\n",
            self.runs,
            self.per_run(self.kernel_ms())
        );
        let _ = writeln!(
            s,
            "| op type | ms per run | share | kernels per run |\n|---|---:|---:|---:|"
        );
        for op in &self.ops {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.1} % | {:.1} |",
                op.op,
                self.per_run(op.total_ms),
                self.share(op),
                op.count as f64 / self.runs.max(1) as f64
            );
        }
        s
    }

    /// The `n` slowest op types in one line: `Conv 41.2 % (3.10 ms), ...`.
    pub fn top(&self, n: usize) -> String {
        self.ops
            .iter()
            .take(n)
            .map(|op| {
                format!(
                    "{} {:.1} % ({:.2} ms)",
                    op.op,
                    self.share(op),
                    self.per_run(op.total_ms)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sums the kernel events of a trace per `args.op_name`.
pub fn aggregate(trace: &str) -> Result<Profile> {
    let events: Value = serde_json::from_str(trace).context("the trace is not JSON")?;
    let Some(events) = events.as_array() else {
        bail!("the trace is not a JSON array of events");
    };
    let mut per_op: HashMap<String, (f64, usize)> = HashMap::new();
    let mut runs = 0;
    for e in events {
        let cat = e.get("cat").and_then(Value::as_str).unwrap_or("");
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if cat == "Session" && name == "model_run" {
            runs += 1;
        }
        if cat != "Node" || !name.contains("_kernel_time") {
            continue;
        }
        let op = e
            .pointer("/args/op_name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let dur = e.get("dur").and_then(Value::as_f64).unwrap_or(0.0);
        let slot = per_op.entry(op.to_string()).or_default();
        slot.0 += dur / 1e3;
        slot.1 += 1;
    }
    let mut ops: Vec<OpTime> = per_op
        .into_iter()
        .map(|(op, (total_ms, count))| OpTime {
            op,
            total_ms,
            count,
        })
        .collect();
    ops.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.op.cmp(&b.op)));
    Ok(Profile { ops, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"[
      {"cat": "Session", "name": "session_initialization", "dur": 5000, "args": {}},
      {"cat": "Session", "name": "model_run", "dur": 900, "args": {}},
      {"cat": "Node", "name": "n1_fence_before", "dur": 0, "args": {"op_name": "Conv"}},
      {"cat": "Node", "name": "n1_kernel_time", "dur": 300, "args": {"op_name": "Conv"}},
      {"cat": "Node", "name": "n2_kernel_time", "dur": 100, "args": {"op_name": "Relu"}},
      {"cat": "Node", "name": "n3_kernel_time", "dur": 200, "args": {"op_name": "Conv"}},
      {"cat": "Session", "name": "model_run", "dur": 700, "args": {}},
      {"cat": "Node", "name": "n1_kernel_time", "dur": 300, "args": {"op_name": "Conv"}},
      {"cat": "Node", "name": "n2_kernel_time", "dur": 100, "args": {"op_name": "Relu"}}
    ]"#;

    #[test]
    fn sums_kernel_time_per_op_type() {
        let p = aggregate(TRACE).unwrap();
        assert_eq!(p.runs, 2);
        assert_eq!(p.ops.len(), 2);
        let conv = &p.ops[0];
        assert_eq!((conv.op.as_str(), conv.count), ("Conv", 3));
        assert!((conv.total_ms - 0.8).abs() < 1e-12);
        assert_eq!((p.ops[1].op.as_str(), p.ops[1].count), ("Relu", 2));
        assert!((p.kernel_ms() - 1.0).abs() < 1e-12);
        assert!((p.share(conv) - 80.0).abs() < 1e-9);
        let md = p.markdown();
        assert!(md.contains("| Conv | 0.400 | 80.0 % | 1.5 |"), "{md}");
        assert!(md.contains("| Relu | 0.100 | 20.0 % | 1.0 |"), "{md}");
        assert!(md.contains("0.50 ms of kernels per run"), "{md}");
        assert_eq!(p.top(1), "Conv 80.0 % (0.40 ms)");
    }

    #[test]
    fn rejects_what_is_not_a_trace() {
        assert!(aggregate("{}").is_err());
        assert!(aggregate("[").is_err());
        let empty = aggregate("[]").unwrap();
        assert!(empty.ops.is_empty() && empty.runs == 0);
        assert_eq!(empty.top(3), "");
    }
}
