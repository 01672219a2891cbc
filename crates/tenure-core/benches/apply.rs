//! The lease table's apply rate and memory, written to artifacts/bench/.
//!
//! `cargo bench -p tenure-core --bench apply` (or `scripts/bench-core`).
//! Measures, on one core, in one run:
//! - acquire+release cycles over 100k keys, as commands applied per second,
//!   against a peer measured alongside: a bare `BTreeMap` doing only the
//!   token bookkeeping a lock table cannot avoid (the floor);
//! - heap bytes per idle lock record and per active lease (counted by the
//!   allocator: requested bytes, not the allocator's own overhead).
//!
//! A benchmark, not a test: nothing here asserts a time.
#![allow(missing_docs, clippy::disallowed_methods)] // wall-clock timing is the point here

use std::alloc::System;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tenure_core::{Acquire, ApplyCtx, Command, LeaseId, Release, Reply, Table, TableConfig};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 100_000;
const ROUNDS: usize = 5;
/// Keys of the smoke run that `cargo test --all-targets` makes of this bench.
const SMOKE_KEYS: usize = 1_000;

fn key(i: usize) -> String {
    format!("svc/orders/shard-{i:06}")
}

fn acquire(i: usize, round: usize) -> Command {
    Command::Acquire(Acquire {
        tenant: "bench".into(),
        key: key(i),
        owner: format!("worker-{}", i % 64),
        request_id: format!("a-{round}-{i}"),
        ttl_ms: 10_000,
        wait_timeout_ms: 0,
    })
}

fn release(id: LeaseId, i: usize, round: usize) -> Command {
    Command::Release(Release {
        tenant: "bench".into(),
        lease_id: id,
        owner: format!("worker-{}", i % 64),
        request_id: format!("r-{round}-{i}"),
    })
}

struct Rate {
    commands: usize,
    seconds: f64,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.commands as f64 / self.seconds
    }
}

/// Acquire+release of every key, ROUNDS times. Commands are built before the
/// clock starts; only `apply` is timed.
fn table_rate(keys: usize, config: TableConfig) -> Rate {
    let mut table = Table::new(config).expect("valid config");
    let mut index = 0u64;
    let mut seconds = 0.0;
    let mut commands = 0;
    for round in 0..ROUNDS {
        let acquires: Vec<Command> = (0..keys).map(|i| acquire(i, round)).collect();
        let first = index + 1;
        let releases: Vec<Command> = (0..keys)
            .map(|i| release(LeaseId::from_index(first + i as u64), i, round))
            .collect();
        let start = Instant::now();
        for cmd in acquires.into_iter().chain(releases) {
            index += 1;
            let applied = table.apply(ApplyCtx { index, at_ms: 0 }, cmd);
            assert!(
                matches!(applied.result, Ok(Reply::Lease(_))),
                "bench command refused: {:?}",
                applied.result
            );
        }
        seconds += start.elapsed().as_secs_f64();
        commands += 2 * keys;
    }
    Rate { commands, seconds }
}

/// The floor: per cycle, look up the key's token, bump it, record the
/// holder, then clear it: what any lock table must do at the least.
fn peer_rate(keys: usize) -> Rate {
    let mut map: BTreeMap<(String, String), (u64, Option<u64>)> = BTreeMap::new();
    let mut seconds = 0.0;
    let mut commands = 0;
    for round in 0..ROUNDS {
        let names: Vec<(String, String)> = (0..keys).map(|i| ("bench".into(), key(i))).collect();
        let start = Instant::now();
        for (n, k) in names.iter().enumerate() {
            let e = map.entry(k.clone()).or_insert((0, None));
            e.0 += 1;
            e.1 = Some((round * keys + n) as u64);
        }
        for k in &names {
            if let Some(e) = map.get_mut(k) {
                e.1 = None;
            }
        }
        seconds += start.elapsed().as_secs_f64();
        commands += 2 * keys;
    }
    Rate { commands, seconds }
}

/// What a snapshot of a table full of memory costs: `keys` keys cycled
/// ROUNDS times under `config`, then the table cloned (what a snapshot
/// builder holds the table's lock for) and encoded (what it then does
/// without the lock). Seconds to clone, seconds to encode, bytes.
fn snapshot_cost(keys: usize, config: TableConfig) -> (f64, f64, usize) {
    let mut table = Table::new(config).expect("valid config");
    let mut index = 0u64;
    for round in 0..ROUNDS {
        let first = index + 1;
        for i in 0..keys {
            index += 1;
            table.apply(ApplyCtx { index, at_ms: 0 }, acquire(i, round));
        }
        for i in 0..keys {
            index += 1;
            let id = LeaseId::from_index(first + i as u64);
            table.apply(ApplyCtx { index, at_ms: 0 }, release(id, i, round));
        }
    }
    let start = Instant::now();
    let copy = table.clone();
    let cloned = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let bytes = copy.snapshot();
    let encoded = start.elapsed().as_secs_f64();
    (cloned, encoded, bytes.len())
}

/// Heap bytes held by `table` after `fill`, per key.
fn bytes_per_key(keys: usize, config: TableConfig, release_all: bool) -> f64 {
    let region = Region::new(GLOBAL);
    let mut table = Table::new(config).expect("config");
    let mut index = 0;
    for i in 0..keys {
        index += 1;
        table.apply(ApplyCtx { index, at_ms: 0 }, acquire(i, 0));
        if release_all {
            let id = LeaseId::from_index(index);
            index += 1;
            table.apply(ApplyCtx { index, at_ms: 0 }, release(id, i, 0));
        }
    }
    let stats = region.change();
    let held = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
    assert_eq!(table.stats().locks, keys);
    drop(table);
    held / keys as f64
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it: then only a small smoke run, and no files written.
    if !std::env::args().any(|a| a == "--bench") {
        let (ours, peer) = (
            table_rate(SMOKE_KEYS, TableConfig::default()),
            peer_rate(SMOKE_KEYS),
        );
        let idle = bytes_per_key(SMOKE_KEYS, TableConfig::default(), true);
        println!(
            "smoke run ({SMOKE_KEYS} keys): {} commands, {} peer ops, {idle:.0} bytes per key",
            ours.commands, peer.commands
        );
        return;
    }
    // TENURE_BENCH_KEYS scales the run down, e.g. for callgrind.
    let keys = std::env::var("TENURE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KEYS);
    // The default keeps up to 100k request ids and 100k ended leases; a
    // short memory (10k each) shows what that retention costs.
    let short = TableConfig {
        request_retention_count: 10_000,
        lease_retention_count: 10_000,
        ..TableConfig::default()
    };
    // Alternate the three, twice, so machine noise hits all.
    let (mut ours, mut ours_short, mut peers) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        ours.push(table_rate(keys, TableConfig::default()));
        ours_short.push(table_rate(keys, short.clone()));
        peers.push(peer_rate(keys));
    }
    let best = |v: &[Rate]| v.iter().map(Rate::per_sec).fold(0.0, f64::max);
    let (table_cps, short_cps, peer_cps) = (best(&ours), best(&ours_short), best(&peers));

    // Memories forget at once, so only lock records (and leases) stay.
    let forgetful = TableConfig {
        request_retention_count: 1,
        lease_retention_count: 1,
        ..TableConfig::default()
    };
    let idle = bytes_per_key(keys, forgetful.clone(), true);
    let held = bytes_per_key(keys, forgetful, false);
    // An active lease as clients use it: with its request_id remembered.
    let held_remembered = bytes_per_key(keys, TableConfig::default(), false);

    let (clone_s, encode_s, snapshot_bytes) = snapshot_cost(keys, TableConfig::default());
    let (short_clone_s, short_encode_s, short_snapshot_bytes) = snapshot_cost(keys, short.clone());
    // The default before 2026-11-30: a million of each.
    let million = TableConfig {
        request_retention_count: 1_000_000,
        lease_retention_count: 1_000_000,
        ..TableConfig::default()
    };
    let (old_clone_s, old_encode_s, old_snapshot_bytes) = snapshot_cost(keys, million);

    let date = std::env::var("BENCH_DATE").unwrap_or_else(|_| "unknown date".into());
    let mut md = String::new();
    let _ = writeln!(md, "# tenure-core apply benchmark ({date})\n");
    let _ = writeln!(
        md,
        "Acquire+release cycles over {keys} keys, {ROUNDS} rounds, one thread, release build \
         (`cargo bench -p tenure-core --bench apply`). Best of 2 alternating runs each.\n"
    );
    let _ = writeln!(md, "| measure | value |\n| --- | --- |");
    let _ = writeln!(md, "| lease table: applied commands/s | {table_cps:.0} |");
    let _ = writeln!(
        md,
        "| lease table, retention 10k requests / 10k ended leases: commands/s | {short_cps:.0} |"
    );
    let _ = writeln!(
        md,
        "| peer (bare BTreeMap token bookkeeping): ops/s | {peer_cps:.0} |"
    );
    let _ = writeln!(md, "| ratio table / peer | {:.3} |", table_cps / peer_cps);
    let _ = writeln!(md, "| heap bytes per idle lock record | {idle:.0} |");
    let _ = writeln!(
        md,
        "| heap bytes per active lease (lock + lease) | {held:.0} |"
    );
    let _ = writeln!(
        md,
        "| heap bytes per active lease with its request_id remembered | {held_remembered:.0} |"
    );
    let _ = writeln!(
        md,
        "| snapshot after the run, default retention ({}): bytes / clone ms / encode ms | \
         {snapshot_bytes} / {:.1} / {:.1} |",
        tenure_core::DEFAULT_RETENTION_COUNT,
        clone_s * 1e3,
        encode_s * 1e3
    );
    let _ = writeln!(
        md,
        "| snapshot after the run, retention 1M / 1M (the old default): bytes / clone ms / encode ms | \
         {old_snapshot_bytes} / {:.1} / {:.1} |",
        old_clone_s * 1e3,
        old_encode_s * 1e3
    );
    let _ = writeln!(
        md,
        "| snapshot after the run, retention 10k / 10k: bytes / clone ms / encode ms | \
         {short_snapshot_bytes} / {:.1} / {:.1} |",
        short_clone_s * 1e3,
        short_encode_s * 1e3
    );
    let _ = writeln!(
        md,
        "\nBytes are what the table asked the allocator for (keys like `{}`, 22 bytes); \
         malloc's own per-block overhead comes on top.",
        key(0)
    );
    print!("{md}");
    let json = serde_json::json!({
        "date": date,
        "keys": keys,
        "rounds": ROUNDS,
        "table_commands_per_sec": table_cps,
        "table_short_retention_commands_per_sec": short_cps,
        "peer_ops_per_sec": peer_cps,
        "ratio": table_cps / peer_cps,
        "bytes_per_idle_lock": idle,
        "bytes_per_active_lease": held,
        "bytes_per_active_lease_with_request": held_remembered,
        "snapshot_bytes": snapshot_bytes,
        "snapshot_clone_seconds": clone_s,
        "snapshot_encode_seconds": encode_s,
        "snapshot_million_retention_bytes": old_snapshot_bytes,
        "snapshot_million_retention_clone_seconds": old_clone_s,
        "snapshot_million_retention_encode_seconds": old_encode_s,
        "snapshot_short_retention_bytes": short_snapshot_bytes,
        "snapshot_short_retention_clone_seconds": short_clone_s,
        "snapshot_short_retention_encode_seconds": short_encode_s,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../artifacts/bench");
    if let Err(e) = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(format!("{dir}/core.md"), &md))
        .and_then(|()| std::fs::write(format!("{dir}/core.json"), format!("{json:#}\n")))
    {
        eprintln!("could not write {dir}: {e}");
        std::process::exit(1);
    }
}
