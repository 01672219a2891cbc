//! What a run measured, and how it is written: the table on the terminal,
//! JSON or CSV for scripts, a Markdown table for artifacts/bench/.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Width of one timeline bucket, in milliseconds.
pub const BUCKET_MS: u64 = 10;

/// The outcome of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The system measured ("tenure", "etcd").
    pub system: String,
    /// The workload's name.
    pub workload: String,
    /// Concurrent clients.
    pub clients: u32,
    /// Keys the workload spread over.
    pub keys: u64,
    /// Share of operations sent to one hot key.
    pub contention: f64,
    /// Leases kept alive (keep-alive workload), else 0.
    pub leases: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Operations that succeeded in the window.
    pub ok: u64,
    /// Operations that succeeded in the whole run, warm-up included (for
    /// operations per fsync against a disk counter read around the run).
    pub total_ok: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency percentiles of successful operations, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Failed operations (after the client's retries), by reason.
    pub errors: BTreeMap<String, u64>,
    /// Refusals that the client retried and that then succeeded or failed.
    pub retries: u64,
    /// CPU used by each watched process over the window, in cores.
    pub cpu: Vec<ProcessCpu>,
    /// What a fault did to the load, when one was injected.
    pub fault: Option<FaultReport>,
}

/// CPU use of one watched process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessCpu {
    /// The process id.
    pub pid: u32,
    /// CPU seconds per wall-clock second over the window.
    pub cores: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
}

/// The effect of an injected fault (`--fault-at`).
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    /// When the fault command finished (the fault had happened), seconds
    /// into the window.
    pub at_s: f64,
    /// Successful operations per second over the 5 s before it.
    pub before_per_s: f64,
    /// The longest stretch without a successful operation that began
    /// within a second either side of the fault's completion, ms.
    pub window_ms: f64,
    /// From the fault until the first full second whose throughput is at
    /// least 90 % of `before_per_s`, ms; `None`: not within the run.
    pub recovery_ms: Option<f64>,
}

/// Latency percentiles (ms) of a histogram in microseconds.
pub fn percentiles(h: &Histogram<u64>) -> [f64; 5] {
    let ms = |v: u64| v as f64 / 1000.0;
    if h.is_empty() {
        return [0.0; 5];
    }
    [
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    ]
}

/// Reads the fault's effect off a timeline of successes per
/// [`BUCKET_MS`] bucket (bucket 0 starts the measured window).
pub fn fault_effect(timeline: &[u64], fault_bucket: usize) -> FaultReport {
    let per_s = 1000 / BUCKET_MS as usize;
    let before_from = fault_bucket.saturating_sub(5 * per_s);
    let before: u64 = timeline[before_from..fault_bucket.min(timeline.len())]
        .iter()
        .sum();
    let before_secs = (fault_bucket - before_from).max(1) as f64 / per_s as f64;
    let before_per_s = before as f64 / before_secs;

    // The longest run of empty buckets that starts near the fault.
    let (mut longest, mut run, mut run_start) = (0usize, 0usize, 0usize);
    for (i, &n) in timeline.iter().enumerate() {
        if n == 0 {
            if run == 0 {
                run_start = i;
            }
            run += 1;
            if run_start + per_s >= fault_bucket && run_start <= fault_bucket + per_s {
                longest = longest.max(run);
            }
        } else {
            run = 0;
        }
    }

    let target = 0.9 * before_per_s;
    let recovery = (fault_bucket..timeline.len().saturating_sub(per_s)).find(|&start| {
        let second: u64 = timeline[start..start + per_s].iter().sum();
        start > fault_bucket + longest && second as f64 >= target
    });
    FaultReport {
        at_s: fault_bucket as f64 * BUCKET_MS as f64 / 1000.0,
        before_per_s,
        window_ms: (longest as u64 * BUCKET_MS) as f64,
        recovery_ms: recovery.map(|b| ((b - fault_bucket) as u64 * BUCKET_MS) as f64),
    }
}

impl Report {
    /// Errors as `REASON=n, …` (or `-`).
    pub fn errors_line(&self) -> String {
        if self.errors.is_empty() {
            return "-".into();
        }
        self.errors
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The most CPU any watched process used (the leader's, in a cluster).
    pub fn busiest_cores(&self) -> Option<f64> {
        self.cpu.iter().map(|c| c.cores).reduce(f64::max)
    }

    /// The human table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} · {} · {} clients · {} keys · contention {}{}",
            self.system,
            self.workload,
            self.clients,
            self.keys,
            self.contention,
            if self.leases > 0 {
                format!(" · {} leases", self.leases)
            } else {
                String::new()
            }
        );
        let rows = [
            ("ok", format!("{} in {:.1} s", self.ok, self.seconds)),
            ("throughput", format!("{:.0} ops/s", self.throughput)),
            (
                "latency",
                format!(
                    "p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms",
                    self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
                ),
            ),
            ("errors", self.errors_line()),
            ("retried", self.retries.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<11} {value}");
        }
        for c in &self.cpu {
            let _ = writeln!(
                out,
                "  {:<11} pid {} · {:.3} cores · {:.0} MiB",
                "cpu", c.pid, c.cores, c.rss_mib
            );
        }
        if let Some(f) = &self.fault {
            let _ = writeln!(
                out,
                "  {:<11} at {:.1} s · {:.0} ops/s before · no success for {:.0} ms · full throughput after {}",
                "fault",
                f.at_s,
                f.before_per_s,
                f.window_ms,
                f.recovery_ms
                    .map_or("not within the run".into(), |r| format!("{r:.0} ms"))
            );
        }
        out
    }

    /// The header of [`Report::markdown_row`].
    pub fn markdown_header() -> &'static str {
        "| system | workload | clients | keys | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | leader cores |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    }

    /// One Markdown table row.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            self.system,
            self.workload,
            self.clients,
            self.keys,
            self.throughput,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.errors_line(),
            self.busiest_cores()
                .map_or("-".into(), |c| format!("{c:.3}"))
        )
    }

    /// The CSV header of [`Report::csv_row`].
    pub fn csv_header() -> &'static str {
        "system,workload,clients,keys,contention,leases,seconds,ok,throughput,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,errors,retries,leader_cores,fault_window_ms,fault_recovery_ms"
    }

    /// One CSV row (errors as `REASON=n;…`).
    pub fn csv_row(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        format!(
            "{},{},{},{},{},{},{:.3},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{}",
            self.system,
            self.workload,
            self.clients,
            self.keys,
            self.contention,
            self.leases,
            self.seconds,
            self.ok,
            self.throughput,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.errors_line().replace(", ", ";"),
            self.retries,
            opt(self.busiest_cores()),
            opt(self.fault.as_ref().map(|f| f.window_ms)),
            opt(self.fault.as_ref().and_then(|f| f.recovery_ms)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_window_is_the_empty_stretch_after_the_fault_and_recovery_waits_for_90_percent() {
        // 10 s of 10 per bucket (1000/s), the fault at 5 s, 300 ms of
        // nothing, then 500/s for a second, then 1000/s again.
        let mut t = vec![10u64; 1000];
        for b in &mut t[500..530] {
            *b = 0;
        }
        for b in &mut t[530..630] {
            *b = 5;
        }
        let f = fault_effect(&t, 500);
        assert_eq!(f.at_s, 5.0);
        assert!((f.before_per_s - 1000.0).abs() < 1e-9);
        assert_eq!(f.window_ms, 300.0);
        // The first full second at ≥ 900/s starts once 9 of its 10 tenths
        // are back at full rate.
        let r = f.recovery_ms.expect("recovers");
        assert!((1100.0..=1300.0).contains(&r), "{r}");
    }

    #[test]
    fn a_run_that_never_recovers_says_so() {
        let mut t = vec![10u64; 600];
        for b in &mut t[300..] {
            *b = 0;
        }
        let f = fault_effect(&t, 300);
        assert_eq!(f.window_ms, 3000.0);
        assert_eq!(f.recovery_ms, None);
    }
}
