//! # tenure-bench: a closed-loop load generator for lock services
//!
//! N clients (1…1024), each with its own connections, run one workload
//! against a [`Target`] for a fixed time after a warm-up: every client
//! starts its next operation when the last one ends. The run ends with a
//! [`Report`]: throughput, latency percentiles, errors by reason, the CPU of
//! watched processes and, when a fault was injected, how long the load
//! stalled and when it recovered.
//!
//! [`tenure::TenureTarget`] drives a Tenure cluster (`tenure bench`),
//! [`http::HttpTarget`] the same through its HTTP ports (`tenure bench
//! --http`); the
//! `tenure-bench-etcd` crate drives etcd with the same runner, so the two
//! reports compare like for like.
#![allow(clippy::disallowed_methods)] // measuring wall-clock time is this crate's purpose

pub mod http;
pub mod report;
pub mod target;
pub mod tenure;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure_client::Mode;
use tokio::time::Instant;

pub use report::Report;
pub use target::{Downstream, OpError, Target};

/// What went wrong with a run as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings cannot make a run.
    #[error("invalid settings: {0}")]
    Invalid(String),
    /// The system could not be reached or set up.
    #[error("setup failed: {0}")]
    Setup(String),
    /// Writing the results failed.
    #[error("writing results: {0}")]
    Io(#[from] std::io::Error),
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// (a) acquire with a TTL, release.
    LockCycle,
    /// (b) acquire, a write to a downstream store that refuses stale
    /// fencing tokens, release.
    Fenced,
    /// (c) keep `--leases` leases alive, renewing each every `--renew-ms`.
    KeepAlive,
    /// (d) many clients on few keys, acquires that wait their turn.
    Contended,
    /// (e) linearizable reads of a lock.
    Get,
    /// (f) read-write locks: SHARED acquires (readers) with an occasional
    /// EXCLUSIVE one (a writer, `--writers` of them), all waiting their
    /// turn on `--keys` keys.
    SharedReaders,
    /// (g) one slot of a semaphore of `--limit` per acquire, waiting its
    /// turn on `--keys` keys.
    Semaphore,
}

impl Workload {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Workload::LockCycle => "lock-cycle",
            Workload::Fenced => "fenced",
            Workload::KeepAlive => "keep-alive",
            Workload::Contended => "contended",
            Workload::Get => "get",
            Workload::SharedReaders => "shared-readers",
            Workload::Semaphore => "semaphore",
        }
    }

    /// Whether the workload's acquires wait their turn on keys shared by
    /// every client.
    fn contends(self) -> bool {
        matches!(
            self,
            Workload::Contended | Workload::SharedReaders | Workload::Semaphore
        )
    }
}

/// Output format of the machine-readable result file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object (the report).
    Json,
    /// A header line and one row.
    Csv,
}

/// The settings of a run; `tenure bench` and `tenure-bench-etcd` share them.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value_t = Workload::LockCycle)]
    pub workload: Workload,
    /// Concurrent clients, each with its own connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Keys to spread operations over (clients get disjoint keys while
    /// there are enough; `contended` picks among all of them).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub keys: u64,
    /// Share of operations sent to one hot key, 0…1.
    #[arg(long, default_value_t = 0.0)]
    pub contention: f64,
    /// Leases the keep-alive workload holds, split across the clients.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub leases: u64,
    /// How often the keep-alive workload renews each lease, ms (default: a
    /// third of the TTL).
    #[arg(long)]
    pub renew_ms: Option<u64>,
    /// Lease TTL, ms.
    #[arg(long, default_value_t = 10_000)]
    pub ttl_ms: u64,
    /// How long a `contended`, `shared-readers` or `semaphore` acquire
    /// waits for its turn, ms.
    #[arg(long, default_value_t = 30_000)]
    pub wait_ms: u64,
    /// The share of `shared-readers` acquires that are EXCLUSIVE (writers), 0…1.
    #[arg(long, default_value_t = 0.05)]
    pub writers: f64,
    /// The slots of the `semaphore` workload's semaphores.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: u32,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seed of the key choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also report CPU and memory of these processes (the cluster's nodes).
    #[arg(long = "watch-pid", value_delimiter = ',')]
    pub watch_pids: Vec<u32>,
    /// Run `--fault-cmd` this many seconds into the measured window.
    #[arg(long, requires = "fault_cmd")]
    pub fault_at: Option<f64>,
    /// A shell command that injects a fault (e.g. kills the leader).
    #[arg(long, requires = "fault_at")]
    pub fault_cmd: Option<String>,
    /// Directory for the result files.
    #[arg(long, default_value = "artifacts/bench")]
    pub out: PathBuf,
    /// File name stem (default: SYSTEM-WORKLOAD-CLIENTSc).
    #[arg(long)]
    pub name: Option<String>,
    /// Format of the machine-readable file; a Markdown table is written too.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Write no files, only print the table.
    #[arg(long)]
    pub no_write: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    fn check(&self) -> Result<(), Error> {
        if !(0.0..=1.0).contains(&self.contention) {
            return Err(Error::Invalid("--contention must be within 0…1".into()));
        }
        if !(0.0..=1.0).contains(&self.writers) {
            return Err(Error::Invalid("--writers must be within 0…1".into()));
        }
        if !(self.duration > 0.0 && self.duration <= 86_400.0) {
            return Err(Error::Invalid(
                "--duration must be within (0, 86400] s".into(),
            ));
        }
        if !(0.0..=3_600.0).contains(&self.warmup) {
            return Err(Error::Invalid("--warmup must be within 0…3600 s".into()));
        }
        if let Some(at) = self.fault_at
            && !(0.0..self.duration).contains(&at)
        {
            return Err(Error::Invalid(
                "--fault-at must fall inside --duration".into(),
            ));
        }
        if self.ttl_ms == 0 || self.renew_ms == Some(0) {
            return Err(Error::Invalid(
                "--ttl-ms and --renew-ms must be positive".into(),
            ));
        }
        Ok(())
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    fn renew_every(&self) -> Duration {
        Duration::from_millis(self.renew_ms.unwrap_or(self.ttl_ms / 3).max(1))
    }
}

/// What every worker adds to.
struct Shared {
    stop: AtomicBool,
    /// Set when the measured window begins.
    measuring: AtomicBool,
    /// Successes per [`report::BUCKET_MS`] since the run began (warm-up
    /// included), for the progress bar and the fault analysis.
    timeline: Vec<AtomicU64>,
    began: Instant,
    downstream: Downstream,
}

impl Shared {
    fn success(&self, at: Instant) {
        let bucket =
            at.saturating_duration_since(self.began).as_millis() as u64 / report::BUCKET_MS;
        if let Some(b) = self.timeline.get(bucket as usize) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one worker measured.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    retries: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 µs … 1 h at 3 significant digits; cannot fail for these bounds.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            errors: BTreeMap::new(),
            retries: 0,
        }
    }
}

/// Key `index` of the run.
fn key_name(index: u64) -> String {
    format!("bench/{index}")
}

/// The key of client `client`'s next operation.
fn pick_key(args: &BenchArgs, client: u32, rng: &mut StdRng) -> String {
    if args.contention > 0.0 && rng.gen_bool(args.contention) {
        return key_name(0);
    }
    let clients = u64::from(args.clients);
    if !args.workload.contends() && args.keys >= clients {
        // Disjoint keys per client: contention only where asked for.
        let per_client = args.keys / clients;
        return key_name(u64::from(client) + clients * rng.gen_range(0..per_client));
    }
    key_name(rng.gen_range(0..args.keys))
}

/// Runs `args`'s workload against `target` and answers the report. The
/// progress bar goes to stderr unless `args.quiet`.
pub async fn run<T: Target>(target: Arc<T>, args: &BenchArgs) -> Result<Report, Error> {
    args.check()?;
    if matches!(args.workload, Workload::SharedReaders | Workload::Semaphore) && !target.has_modes()
    {
        return Err(Error::Invalid(format!(
            "{} has no shared locks or semaphores: the {} workload needs them",
            target.system(),
            args.workload.name()
        )));
    }
    let mut conns = Vec::new();
    for client in 0..args.clients {
        let conn = target.connect(client).await.map_err(|e| {
            Error::Setup(format!("client {client} could not connect: {}", e.reason))
        })?;
        conns.push(conn);
    }
    if args.workload == Workload::KeepAlive {
        hold_leases::<T::Conn, T>(&mut conns, args).await?;
    }

    let total = Duration::from_secs_f64(args.warmup + args.duration);
    let buckets = total.as_millis() as u64 / report::BUCKET_MS + 1;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(args.warmup == 0.0),
        timeline: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        began: Instant::now(),
        downstream: Downstream::default(),
    });
    let mut workers = Vec::new();
    for (client, conn) in conns.into_iter().enumerate() {
        let (shared, args) = (shared.clone(), args.clone());
        workers.push(tokio::spawn(work::<T>(conn, client as u32, args, shared)));
    }

    let progress = (!args.quiet).then(|| progress_bar(total));
    let warmup_end = shared.began + Duration::from_secs_f64(args.warmup);
    let end = shared.began + total;
    let fault = args
        .fault_at
        .map(|at| warmup_end + Duration::from_secs_f64(at));
    let mut fault_cmd = args.fault_cmd.clone();
    // When the fault command finished: the fault has happened by then (a
    // command that must first find its target can take a while).
    let fault_done: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut cpu_before = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if now >= warmup_end && cpu_before.is_none() {
            shared.measuring.store(true, Ordering::Relaxed);
            cpu_before = Some((now, proc_usage(&args.watch_pids)));
        }
        if let (Some(at), Some(cmd)) = (fault, &fault_cmd)
            && now >= at
        {
            tracing::info!(command = %cmd, "injecting the fault");
            let (cmd, done) = (cmd.clone(), fault_done.clone());
            tokio::spawn(async move {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .status()
                    .await;
                let _ = done.set(Instant::now());
                if !status.is_ok_and(|s| s.success()) {
                    tracing::warn!(command = %cmd, "the fault command failed");
                }
            });
            fault_cmd = None;
        }
        if let Some(bar) = &progress {
            let done: u64 = shared
                .timeline
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .sum();
            bar.set_position(now.saturating_duration_since(shared.began).as_millis() as u64);
            let secs = now
                .saturating_duration_since(shared.began)
                .as_secs_f64()
                .max(0.001);
            bar.set_message(format!("{done} ok · {:.0} ops/s", done as f64 / secs));
        }
        if now >= end {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let measured_end = Instant::now();
    let cpu_after = proc_usage(&args.watch_pids);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    let mut tally = Tally::new();
    for worker in workers {
        // A worker stuck in a call past the end is not waited for long.
        let Ok(Ok((mut conn, t))) = tokio::time::timeout(Duration::from_secs(15), worker).await
        else {
            continue;
        };
        let _ = tally.latency.add(&t.latency);
        for (reason, n) in t.errors {
            *tally.errors.entry(reason).or_default() += n;
        }
        tally.retries += t.retries;
        if args.workload == Workload::KeepAlive {
            T::release_all(&mut conn).await;
        }
    }

    let (started, cpu_start) = cpu_before.unwrap_or((warmup_end, Vec::new()));
    let seconds = measured_end
        .saturating_duration_since(started)
        .as_secs_f64();
    let cpu = cpu_start
        .iter()
        .zip(&cpu_after)
        .map(|(a, b)| report::ProcessCpu {
            pid: a.pid,
            cores: (b.cpu_secs - a.cpu_secs) / seconds.max(0.001),
            rss_mib: b.rss_mib,
        })
        .collect();
    let timeline: Vec<u64> = shared
        .timeline
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let first_measured = (args.warmup * 1000.0) as usize / report::BUCKET_MS as usize;
    let fault = args.fault_at.map(|at| {
        let measured = &timeline[first_measured.min(timeline.len())..];
        let at = fault_done
            .get()
            .map_or(Duration::from_secs_f64(at), |done| {
                done.saturating_duration_since(warmup_end)
            });
        report::fault_effect(
            measured,
            (at.as_millis() as u64 / report::BUCKET_MS) as usize,
        )
    });
    let [p50, p90, p99, p999, max] = report::percentiles(&tally.latency);
    let ok = tally.latency.len();
    Ok(Report {
        system: target.system().into(),
        workload: args.workload.name().into(),
        clients: args.clients,
        keys: args.keys,
        contention: args.contention,
        leases: if args.workload == Workload::KeepAlive {
            args.leases
        } else {
            0
        },
        seconds,
        ok,
        total_ok: timeline.iter().sum(),
        throughput: ok as f64 / seconds.max(0.001),
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        errors: tally.errors,
        retries: tally.retries,
        cpu,
        fault,
    })
}

/// Every client takes its share of the keep-alive workload's leases,
/// several clients at once.
async fn hold_leases<C: Send + 'static, T: Target<Conn = C>>(
    conns: &mut Vec<C>,
    args: &BenchArgs,
) -> Result<(), Error> {
    let clients = conns.len() as u64;
    // Keys of their own, so no lease an earlier run left behind is in the way.
    let run: u32 = rand::random();
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.drain(..).enumerate() {
        let keys: Vec<String> = (0..args.leases)
            .filter(|k| k % clients == i as u64)
            .map(|k| format!("keep-alive/{run:08x}/{k}"))
            .collect();
        let ttl = args.ttl();
        tasks.push(tokio::spawn(async move {
            let held = T::hold(&mut conn, &keys, ttl).await;
            (conn, held)
        }));
    }
    for task in tasks {
        let (conn, held) = task
            .await
            .map_err(|e| Error::Setup(format!("a client's setup panicked: {e}")))?;
        held.map_err(|e| Error::Setup(format!("taking the leases failed: {}", e.reason)))?;
        conns.push(conn);
    }
    Ok(())
}

fn progress_bar(total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:40}] {percent:>3}% {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// One client's closed loop.
async fn work<T: Target>(
    mut conn: T::Conn,
    client: u32,
    args: BenchArgs,
    shared: Arc<Shared>,
) -> (T::Conn, Tally) {
    let mut tally = Tally::new();
    let mut rng = StdRng::seed_from_u64(args.seed ^ (u64::from(client) << 32));
    let wait = Duration::from_millis(args.wait_ms);
    let renew_every = args.renew_every();
    while !shared.stop.load(Ordering::Relaxed) {
        let key = pick_key(&args, client, &mut rng);
        let start = Instant::now();
        let (outcome, count) = match args.workload {
            Workload::LockCycle => (
                T::lock_cycle(&mut conn, &key, args.ttl(), None, None).await,
                1,
            ),
            Workload::Fenced => (
                T::lock_cycle(&mut conn, &key, args.ttl(), None, Some(&shared.downstream)).await,
                1,
            ),
            Workload::Contended => (
                T::lock_cycle(&mut conn, &key, args.ttl(), Some(wait), None).await,
                1,
            ),
            Workload::Get => (T::get(&mut conn, &key).await, 1),
            Workload::SharedReaders => {
                let mode = if rng.gen_bool(args.writers) {
                    Mode::Exclusive
                } else {
                    Mode::Shared
                };
                (
                    T::lock_cycle_in(&mut conn, &key, args.ttl(), wait, mode).await,
                    1,
                )
            }
            Workload::Semaphore => (
                T::lock_cycle_in(
                    &mut conn,
                    &key,
                    args.ttl(),
                    wait,
                    Mode::Semaphore(args.limit),
                )
                .await,
                1,
            ),
            Workload::KeepAlive => match T::keep_alive_round(&mut conn).await {
                Ok(alive) => (Ok(()), alive),
                Err(e) => (Err(e), 0),
            },
        };
        let done = Instant::now();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                for _ in 0..count {
                    shared.success(done);
                }
                if measuring {
                    let micros = done.saturating_duration_since(start).as_micros() as u64;
                    let _ = tally.latency.record_n(micros.max(1), count);
                }
            }
            Err(e) => {
                if measuring {
                    *tally.errors.entry(e.reason).or_default() += 1;
                }
                // Do not spin against a system that is down.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if args.workload == Workload::KeepAlive {
            tokio::time::sleep_until(start + renew_every).await;
        }
    }
    tally.retries = T::retries(&conn);
    (conn, tally)
}

/// CPU time and resident memory of a process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// The process.
    pub pid: u32,
    /// User + system CPU time so far, seconds.
    pub cpu_secs: f64,
    /// Resident memory now, MiB.
    pub rss_mib: f64,
}

/// Reads utime + stime and VmRSS of `pid` from /proc (zeros where it
/// cannot be read: the process is gone).
pub fn process_usage(pid: u32) -> Usage {
    const TICKS_PER_SEC: f64 = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Usage {
        pid,
        cpu_secs: (field(11) + field(12)) as f64 / TICKS_PER_SEC,
        rss_mib: rss_kib / 1024.0,
    }
}

fn proc_usage(pids: &[u32]) -> Vec<Usage> {
    pids.iter().map(|&pid| process_usage(pid)).collect()
}

/// Prints the table and writes the result files (unless `--no-write`):
/// `OUT/NAME.json` or `.csv`, and `OUT/NAME.md`. Answers the paths.
pub fn write(report: &Report, args: &BenchArgs) -> Result<Vec<PathBuf>, Error> {
    if args.no_write {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(&args.out)?;
    let stem = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}c", report.system, report.workload, report.clients));
    let data = match args.format {
        Format::Json => (
            args.out.join(format!("{stem}.json")),
            serde_json::to_string_pretty(report).map_err(std::io::Error::other)? + "\n",
        ),
        Format::Csv => (
            args.out.join(format!("{stem}.csv")),
            format!("{}\n{}\n", Report::csv_header(), report.csv_row()),
        ),
    };
    let md = (
        args.out.join(format!("{stem}.md")),
        format!("{}\n{}\n", Report::markdown_header(), report.markdown_row()),
    );
    let mut paths = Vec::new();
    for (path, text) in [data, md] {
        std::fs::write(&path, text)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn clients_get_disjoint_keys_without_contention() {
        let a = args(&["--clients", "4", "--keys", "100"]);
        let mut rng = StdRng::seed_from_u64(1);
        for client in 0..4 {
            for _ in 0..50 {
                let key = pick_key(&a, client, &mut rng);
                let n: u64 = key["bench/".len()..].parse().unwrap();
                assert_eq!(n % 4, u64::from(client), "{key}");
                assert!(n < 100);
            }
        }
    }

    #[test]
    fn full_contention_sends_everything_to_the_hot_key() {
        let a = args(&["--contention", "1"]);
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..20).all(|_| pick_key(&a, 3, &mut rng) == "bench/0"));
    }

    #[test]
    fn settings_out_of_range_are_refused_before_anything_runs() {
        assert!(args(&["--contention", "1.5"]).check().is_err());
        assert!(args(&["--duration", "0"]).check().is_err());
        assert!(
            args(&["--duration", "5", "--fault-at", "6", "--fault-cmd", "true"])
                .check()
                .is_err()
        );
        assert!(args(&["--renew-ms", "0"]).check().is_err());
        assert!(args(&[]).check().is_ok());
        assert!(Cli::try_parse_from(["bench", "--clients", "0"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--clients", "1025"]).is_err());
    }
}
