//! `tenure chaos`: faults on real processes, checked by the same checker
//! as the simulations.
//!
//! A cluster of the binary under test runs with one node per network
//! namespace, on TLS and an auth file (the nodes are beyond loopback).
//! Client workers in this process, the simulation's own workers on
//! tenure-client, contend for a few keys and write through a fenced store
//! under their tokens, recording a history in tenure-check's format. The
//! nemesis ([`nemesis`]) injects faults drawn from the seed: partitions
//! (minority, majority, bridge, one-way) with iptables in the namespaces,
//! slow and lossy links with `tc netem`, `kill -9` and restart, SIGSTOP
//! longer than a TTL, fast and stepped clocks with libfaketime, and a full
//! disk. At the end it heals everything, an auditor takes every key within
//! the liveness bound, the replicas must agree, and the history is checked
//! as `tenure check history` checks it.
//!
//! Exit 0: clean; 1: a violation; 2: inconclusive (or the run could not be
//! made). Everything the run made (namespaces, bridge, filters, mounts,
//! processes) goes at the end, on Ctrl-C too; a run killed outright is
//! swept by the next.

mod lab;
mod nemesis;
mod nodes;
mod report;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use tenure_client::{Client, ClientConfig, TlsConfig};
use tenure_sim::history::{Process, Recorder, true_elapsed};
use tenure_sim::store::Store;
use tenure_sim::workload::{Auditor, Worker, Workload};

use crate::error::Error;
pub use nemesis::FaultKind;
use nemesis::Nemesis;
use nodes::{NodeSpec, Nodes, PORT};

/// The drift the clients allow for; a fast clock stays well inside it.
const MAX_DRIFT: f64 = 0.1;

/// Each node's disk when full-disk faults are on, MiB.
const DISK_MIB: u64 = 256;

/// `tenure chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long the clients run under faults, minutes (fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Nodes in the cluster: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// The seed: it draws the faults, their targets and windows, and the
    /// clients' choices (real timing still varies from run to run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The faults to draw from (comma-separated; default: all of them).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Client workers.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: u64,
    /// Keys they contend for.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    keys: u64,
    /// Move to fresh keys every this many seconds (0: the same keys all
    /// run), so that each key's history stays short enough for the
    /// linearizability search; the auditor takes the last set.
    #[arg(long, default_value_t = 60)]
    key_epoch_secs: u64,
    /// The TTL of the clients' leases, ms.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(500..=60_000))]
    ttl_ms: u64,
    /// The directory for the run: history.ndjson, faults.log, report.md,
    /// each node's log (replaced at the start of a run).
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Also write the report here (for artifacts/chaos/summary.md).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The node binary (default: this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Turn a negative control on in every node, passed as
    /// TENURE_CHAOS_CONTROL; only a build made with `--features
    /// chaos-controls` accepts it (`scripts/chaos --control NAME` makes one).
    #[arg(long)]
    control: Option<String>,
}

/// Runs a chaos run; answers the exit status.
pub fn run(args: ChaosArgs, out: &mut impl Write) -> Result<u8, Error> {
    if !(args.minutes > 0.0 && args.minutes <= 24.0 * 60.0) {
        return Err(Error::Cluster(
            "--minutes: more than 0, at most a day".into(),
        ));
    }
    let kinds = if args.faults.is_empty() {
        FaultKind::all()
    } else {
        let mut k = args.faults.clone();
        k.sort();
        k.dedup();
        k
    };
    let faketime = nodes::faketime_lib();
    if kinds.iter().any(|k| k.needs_faketime()) && faketime.is_none() {
        return Err(Error::Cluster(
            "chaos: clock faults need libfaketime (apt-get install faketime; scripts/chaos installs it), \
             or leave clock-fast and clock-step out of --faults"
                .into(),
        ));
    }
    if !lab::is_root() {
        return Err(Error::Cluster(
            "chaos: network namespaces, packet filters and mounts need root".into(),
        ));
    }
    let filters = kinds.iter().any(|k| k.needs_filters());
    // Each tool run once (not `command -v`: `kill` is also a shell builtin).
    let mut tools = vec![("ip", "-V"), ("kill", "-l")];
    if filters {
        tools.push(("iptables", "-V"));
    }
    if kinds.iter().any(|k| k.needs_tc()) {
        tools.push(("tc", "-V"));
    }
    if kinds.contains(&FaultKind::DiskFull) {
        tools.push(("mount", "-V"));
    }
    for (tool, arg) in tools {
        lab::sh(tool, &[arg]).map_err(|_| {
            Error::Cluster(format!(
                "chaos: `{tool}` is missing (apt-get install iproute2 iptables procps; scripts/chaos installs them)"
            ))
        })?;
    }
    // Ctrl-C and SIGTERM from here on stop the run cleanly.
    let runtime = tokio::runtime::Runtime::new()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let _guard = runtime.enter();
        let stop = crate::changes::stop_signal()?;
        let flag = interrupted.clone();
        runtime.spawn(async move {
            stop.await;
            flag.store(true, Ordering::SeqCst);
        });
    }
    let bin = match &args.bin {
        Some(b) => b.canonicalize()?,
        None => std::env::current_exe()?,
    };
    lab::unmount_under(&args.out);
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)?;
    }
    std::fs::create_dir_all(&args.out)?;
    let dir = args.out.canonicalize()?;

    let n = args.nodes;
    let mut lab = lab::Lab::create(n, filters)?;
    let ips: Vec<String> = (1..=n).map(|i| lab.ip(i)).collect();
    let certs = dir.join("certs");
    lab::sh(
        &bin.to_string_lossy(),
        &[
            "certs",
            "init",
            "--out",
            &certs.to_string_lossy(),
            "--nodes",
            &n.to_string(),
            "--san",
            &ips.join(","),
        ],
    )?;
    // One principal per client (an owner is its principal), one for the
    // auditor, one admin for the nemesis.
    let mut auth = String::new();
    let mut tokens = BTreeMap::new();
    let names: Vec<String> = (1..=args.clients)
        .map(|c| format!("chaos-{c}"))
        .chain(["chaos-auditor".to_owned()])
        .collect();
    for name in &names {
        let (token, toml) =
            crate::cli::new_token(name, &["writer".into(), "reader".into()], &["*".into()])?;
        auth.push_str(&toml);
        tokens.insert(name.clone(), token);
    }
    let (admin_token, toml) = crate::cli::new_token(
        "chaos-admin",
        &["admin".into(), "reader".into()],
        &["*".into()],
    )?;
    auth.push_str(&toml);
    std::fs::write(dir.join("auth.toml"), auth)?;

    let ttl = Duration::from_millis(args.ttl_ms);
    let members = (1..=n)
        .map(|i| format!("{i}={}:{PORT}", lab.ip(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Nodes::new(
        NodeSpec {
            bin: bin.clone(),
            dir: dir.clone(),
            members,
            faketime: faketime.filter(|_| kinds.iter().any(|k| k.needs_faketime())),
            control: args.control.clone(),
            ttl_min_ms: args.ttl_ms.min(1_000),
        },
        n,
    );
    if kinds.contains(&FaultKind::DiskFull) {
        for i in 1..=n {
            lab.mount_tmpfs(&nodes.disk(i), DISK_MIB)?;
        }
    }
    for i in 1..=n {
        nodes.start(&lab, i)?;
    }

    let endpoints: Vec<String> = ips.iter().map(|ip| format!("{ip}:{PORT}")).collect();
    let tls = TlsConfig {
        ca_pem: std::fs::read(certs.join("ca.pem"))?,
        identity: None,
        domain: None,
    };
    let config = |name: &str, prefix: u64| {
        let mut c = ClientConfig::new(endpoints.clone(), "chaos", name)
            .with_tls(tls.clone())
            .with_token(tokens.get(name).cloned().unwrap_or_default());
        c.request_id_prefix = Some(prefix);
        c.max_drift = MAX_DRIFT;
        c.call_timeout = Duration::from_secs(5);
        c.try_timeout = Duration::from_secs(1);
        c
    };
    let mut admin_config = ClientConfig::new(endpoints.clone(), "chaos", "chaos-admin")
        .with_tls(tls.clone())
        .with_token(admin_token)
        .with_admin();
    admin_config.call_timeout = Duration::from_secs(3);
    admin_config.try_timeout = Duration::from_secs(1);
    let admin = runtime.block_on(async {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(c) = Client::connect(admin_config.clone()).await
                && c.status().await.is_ok_and(|s| s.leader_id.is_some())
            {
                return Ok(c);
            }
            if tokio::time::Instant::now() > until || interrupted.load(Ordering::SeqCst) {
                return Err(Error::Cluster(format!(
                    "chaos: no leader within 60 s; see {}/node-*/node.log",
                    dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?;
    // Progress lines only: a closed stdout must not decide the exit status.
    let _ = writeln!(
        out,
        "chaos: {n} nodes up in {}, {} clients on {} keys, seed {}, {} min, faults: {}",
        dir.display(),
        args.clients,
        args.keys,
        args.seed,
        args.minutes,
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    );
    let _ = out.flush();

    // The clients.
    let workload = Workload {
        clients: args.clients,
        keys: usize::try_from(args.keys).unwrap_or(1),
        ttl,
        hold_max: ttl * 3,
        waiters: true,
        client_pause: None,
        key_epoch: Some(Duration::from_secs(args.key_epoch_secs)).filter(|d| !d.is_zero()),
        modes: tenure_sim::workload::Modes::Exclusive,
    };
    let origin = true_elapsed();
    let clock = move || true_elapsed().saturating_sub(origin);
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let stop_at = true_elapsed() + run_for;
    let bound = Duration::from_millis(tenure_server::config::DEFAULT_ELECTION_MAX_MS)
        + ttl
        + Duration::from_secs(10);
    let recorder = Recorder::default();
    let store = Store::new(true);
    let finished = Arc::new(AtomicUsize::new(0));
    let renew_ids = Arc::new(AtomicU64::new(1_000_000));
    let liveness = Arc::new(Mutex::new(Vec::new()));
    for c in 1..=args.clients {
        let worker = Worker {
            process: Process::new(c, "chaos", recorder.clone(), 0),
            config: config(&format!("chaos-{c}"), c),
            store: store.clone(),
            workload: workload.clone(),
            seed: args.seed.wrapping_mul(1_000).wrapping_add(c),
            stop_at,
            nodes: Vec::new(),
            host: format!("chaos-{c}"),
            renew_ids: renew_ids.clone(),
            finished: finished.clone(),
        };
        runtime.spawn(async move {
            if let Err(e) = worker.run().await {
                tracing::warn!(error = %e, "chaos: a client stopped");
            }
        });
    }
    // The nemesis, on a thread of its own (it runs commands and waits).
    let log = std::fs::File::create(dir.join("faults.log"))?;
    let mut record = std::thread::scope(|s| {
        let nemesis = Nemesis {
            lab: &lab,
            nodes: &mut nodes,
            n,
            kinds: kinds.clone(),
            ttl,
            admin: &admin,
            runtime: runtime.handle().clone(),
            clock: &clock,
            stop_at: run_for,
            interrupted: &interrupted,
            log,
        };
        let seed = args.seed;
        s.spawn(move || nemesis.run(seed)).join().ok()
    })
    .unwrap_or_else(|| {
        // The nemesis died mid-fault: heal what can be healed from here,
        // and let the run prove nothing.
        let mut record = nemesis::Record::default();
        record
            .heal_errors
            .push("the nemesis thread panicked; its fault log is lost".into());
        record.heal_errors.extend(lab.heal_network());
        for i in 1..=n {
            let _ = nodes.pause(i, false);
        }
        record
    });

    // The auditor starts once everything has healed; it waits for the
    // clients, then takes every key within the bound.
    let auditor_id = args.clients + 1;
    let auditor = Auditor {
        process: Process::new(auditor_id, "chaos", recorder.clone(), 0),
        config: config("chaos-auditor", auditor_id),
        store: store.clone(),
        workload: workload.clone(),
        clients: usize::try_from(args.clients).unwrap_or(0),
        finished: finished.clone(),
        bound,
        liveness: liveness.clone(),
        keys_of: stop_at.saturating_sub(Duration::from_millis(1)),
    };
    let audited = runtime.spawn(async move { auditor.run().await.map_err(|e| e.to_string()) });

    let deadline =
        clock() + bound * u32::try_from(args.keys).unwrap_or(1) + Duration::from_secs(60);

    let audit = runtime.block_on(async {
        tokio::select! {
            biased;
            r = audited => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("the auditor failed: {e}")),
                Err(e) => Err(format!("the auditor failed: {e}")),
            },
            () = async {
                while clock() < deadline && !interrupted.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            } => Err(if interrupted.load(Ordering::SeqCst) {
                "interrupted".to_owned()
            } else {
                "the clients did not finish in time".to_owned()
            }),
        }
    });
    let replicas = if audit.is_ok() {
        runtime.block_on(replicas_agree(&admin, &endpoints))
    } else {
        report::Replicas::Unknown("not checked: the run did not finish".into())
    };
    let ran = clock();
    nodes.kill_all();
    drop(nodes);
    lab.teardown();
    drop(runtime);

    let history = recorder.ndjson();
    std::fs::write(dir.join("history.ndjson"), &history)?;
    let check = tenure_check::check_history(&history, tenure_check::Limits::default())
        .map_err(|e| Error::Cluster(format!("chaos: the recorded history: {e}")))?;
    let liveness = liveness
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let summary = report::Summary {
        seed: args.seed,
        nodes: n,
        minutes: args.minutes,
        clients: args.clients,
        keys: args.keys,
        key_epoch_secs: args.key_epoch_secs,
        ttl,
        bound,
        bin: bin.display().to_string(),
        control: args.control.clone(),
        kinds,
        injected: std::mem::take(&mut record.injected),
        failed: std::mem::take(&mut record.failed),
        heal_errors: std::mem::take(&mut record.heal_errors),
        repairs: std::mem::take(&mut record.repairs),
        ran,
        audit,
        replicas,
        liveness,
        ops: report::count_ops(&history),
        check,
        history_file: dir.join("history.ndjson"),
    };
    let text = summary.markdown();
    std::fs::write(dir.join("report.md"), &text)?;
    if let Some(path) = &args.report {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &text)?;
    }
    // The report is written; a closed stdout must not turn a violation
    // into exit 0.
    let _ = writeln!(out, "{}", summary.lines());
    let _ = writeln!(out, "report: {}", dir.join("report.md").display());
    Ok(summary.exit_code())
}

/// After the heal: every node reaches the same applied index, and at it
/// the same table digest (INV-5).
async fn replicas_agree(admin: &Client, endpoints: &[String]) -> report::Replicas {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while tokio::time::Instant::now() < until {
        let mut seen = Vec::new();
        for addr in endpoints {
            match admin.status_of(addr).await {
                Ok(s) => seen.push((addr.clone(), s.applied_index, s.table_digest)),
                Err(_) => break,
            }
        }
        if seen.len() == endpoints.len() {
            let first = seen[0].1;
            if seen.iter().all(|s| s.1 == first) {
                let digest = seen[0].2.clone();
                return if seen.iter().all(|s| s.2 == digest) {
                    report::Replicas::Agree {
                        applied: first,
                        digest,
                    }
                } else {
                    report::Replicas::Differ(
                        seen.iter()
                            .map(|(a, i, d)| format!("{a}: applied {i}, digest {d}"))
                            .collect(),
                    )
                };
            }
        }
        last = seen;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    report::Replicas::Unknown(format!(
        "the replicas did not reach one applied index within 30 s: {}",
        last.iter()
            .map(|(a, i, _)| format!("{a} at {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
