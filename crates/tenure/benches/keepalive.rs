//! One client keeps 10,000 leases alive for 60 s through one keep-alive
//! stream against a 3-node cluster of real `tenure serve` processes on
//! loopback; at the end every lease must still be ACTIVE. Reports the
//! leader's CPU time and resident memory over the hold, read from /proc.
//! Writes artifacts/bench/keepalive.md and keepalive.json.
//!
//! `cargo bench -p tenure --bench keepalive` (`scripts/bench-keepalive`);
//! `TENURE_BENCH_LEASES` and `TENURE_BENCH_HOLD_SECS` scale it. Under
//! `cargo test` it does a 100-lease, 3-second smoke run and writes nothing.
#![allow(missing_docs, clippy::disallowed_methods)] // wall-clock timing is the point here

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tenure_client::{Client, ClientConfig};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let leases = if full {
        env_or("TENURE_BENCH_LEASES", 10_000)
    } else {
        100
    };
    let hold = Duration::from_secs(if full {
        env_or("TENURE_BENCH_HOLD_SECS", 60)
    } else {
        3
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let addrs: BTreeMap<u64, String> = (1..=3u64)
        .map(|id| {
            let l = TcpListener::bind("127.0.0.1:0").expect("port");
            (id, l.local_addr().expect("addr").to_string())
        })
        .collect();
    let members = addrs
        .iter()
        .map(|(i, a)| format!("{i}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: BTreeMap<u64, Child> = BTreeMap::new();
    for id in 1..=3u64 {
        let child = Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args([
                "serve",
                "--id",
                &id.to_string(),
                "--initial-cluster",
                &members,
            ])
            .arg("--data-dir")
            .arg(dir.path().join(format!("n{id}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tenure serve");
        nodes.insert(id, child);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let endpoints: Vec<String> = addrs.values().cloned().collect();
        let mut client = None;
        for _ in 0..100 {
            if let Ok(c) =
                Client::connect(ClientConfig::new(endpoints.clone(), "bench", "keeper")).await
            {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let client = client.expect("the cluster answers");
        let acquired_at = Instant::now();
        let mut guards = Vec::with_capacity(leases as usize);
        let mut pending = Vec::new();
        for i in 0..leases {
            let c = client.clone();
            pending.push(tokio::spawn(async move {
                c.acquire(&format!("lease-{i:06}"), Duration::from_secs(30))
                    .await
            }));
            if pending.len() == 256 {
                for p in pending.drain(..) {
                    guards.push(p.await.expect("join").expect("granted"));
                }
            }
        }
        for p in pending {
            guards.push(p.await.expect("join").expect("granted"));
        }
        let acquire_secs = acquired_at.elapsed().as_secs_f64();
        // The leader, and its usage from now over the hold.
        let status = client.status().await.expect("status");
        let leader = status.leader_id.expect("a leader");
        let leader_pid = nodes[&leader].id();
        let before = tenure_bench::process_usage(leader_pid);
        let started = Instant::now();
        tokio::time::sleep(hold).await;
        let held_secs = started.elapsed().as_secs_f64();
        let after = tenure_bench::process_usage(leader_pid);
        let valid = guards.iter().filter(|g| g.is_valid()).count();
        let status = client.status().await.expect("status");
        let cpu = (after.cpu_secs - before.cpu_secs) / held_secs;
        let rss_kib = (after.rss_mib * 1024.0).round() as u64;
        (
            acquire_secs,
            held_secs,
            valid,
            status.active_leases,
            cpu,
            rss_kib,
        )
    });
    for (_, mut n) in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    let (acquire_secs, held_secs, valid, active, cpu, rss_kib) = result;
    assert_eq!(valid as u64, leases, "every guard still valid at the end");
    assert_eq!(active, leases, "every lease still ACTIVE at the end");
    if !full {
        println!("smoke run: {leases} leases kept {held_secs:.1} s, leader cpu {cpu:.3} cores");
        return;
    }
    let date = std::env::var("BENCH_DATE").unwrap_or_else(|_| "unknown date".into());
    let mut md = String::new();
    let _ = writeln!(md, "# Keep-alive of {leases} leases ({date})\n");
    let _ = writeln!(
        md,
        "One `tenure-client` client, one keep-alive stream, TTL 30 s (renewed every 10 s), against 3 `tenure serve` processes on loopback (sled, fsync on). `cargo bench -p tenure --bench keepalive`.\n"
    );
    let _ = writeln!(md, "| measure | value |\n| --- | --- |");
    let _ = writeln!(
        md,
        "| leases acquired | {leases} in {acquire_secs:.1} s ({:.0}/s) |",
        leases as f64 / acquire_secs
    );
    let _ = writeln!(md, "| held | {held_secs:.0} s |");
    let _ = writeln!(md, "| still ACTIVE at the end | {active} of {leases} |");
    let _ = writeln!(md, "| leader CPU over the hold | {cpu:.3} cores |");
    let _ = writeln!(
        md,
        "| leader resident memory at the end | {:.1} MiB |",
        rss_kib as f64 / 1024.0
    );
    print!("{md}");
    let json = format!(
        "{{\"date\":\"{date}\",\"leases\":{leases},\"acquire_secs\":{acquire_secs:.2},\"held_secs\":{held_secs:.1},\"active\":{active},\"leader_cpu_cores\":{cpu:.4},\"leader_rss_kib\":{rss_kib}}}\n"
    );
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../../artifacts/bench");
    let written = std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(format!("{out}/keepalive.md"), &md))
        .and_then(|()| std::fs::write(format!("{out}/keepalive.json"), json));
    if let Err(e) = written {
        eprintln!("could not write {out}: {e}");
        std::process::exit(1);
    }
}
