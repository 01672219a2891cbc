//! Untrusted bytes into the table's decoders (TN-SEC-002): a snapshot read
//! from a peer, a disk or a backup is refused or restored, never a panic,
//! and a restored table always passes its own invariant check.

mod common;

use common::Driver;
use proptest::prelude::*;
use tenure_core::Table;

/// A backup of the busy table, as JSON lines.
fn busy_backup() -> String {
    let mut d = Driver::default();
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        let _ = d.acquire("t", key, "alice", &format!("r{i}"));
        let _ = d.acquire_wait("t", key, "bob", &format!("w{i}"), common::TTL, 5_000);
    }
    let source = tenure_core::backup::Source {
        source_node: 1,
        leader_term: 1,
        applied_index: 6,
        exported_at: "2026-11-29T00:00:00.000Z".into(),
        exported_at_ms: 1_795_910_400_000,
    };
    d.table.backup_lines(source, |_| Some(5_000)).collect()
}

/// A snapshot with locks, a holder, waiters and remembered requests.
fn busy_snapshot() -> Vec<u8> {
    let mut d = Driver::default();
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        let _ = d.acquire("t", key, "alice", &format!("r{i}"));
        let _ = d.acquire_wait("t", key, "bob", &format!("w{i}"), common::TTL, 5_000);
    }
    d.table.snapshot()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tn_sec_002_arbitrary_bytes_never_restore_into_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Ok(table) = Table::restore(&bytes) {
            prop_assert!(table.verify().is_ok());
        }
    }

    #[test]
    fn tn_sec_002_a_damaged_snapshot_is_refused_or_consistent(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = busy_snapshot();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(table) = Table::restore(&bytes) {
            prop_assert!(table.verify().is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tn_sec_002_arbitrary_bytes_never_read_into_a_backup_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        if let Ok(b) = tenure_core::backup::read(bytes.as_slice()) {
            prop_assert!(b.table.verify().is_ok());
        }
    }

    /// Flipped bytes, cut lines, swapped lines: refused, or (a flip the
    /// checksum cannot see is impossible, so never) read as a consistent
    /// table with the header's digest.
    #[test]
    fn tn_bak_002_a_damaged_backup_is_refused(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        swap in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
    ) {
        let original = busy_backup();
        let mut lines: Vec<String> = original.lines().map(|l| format!("{l}\n")).collect();
        if let Some((a, b)) = swap {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        let mut bytes = lines.concat().into_bytes();
        for (at, value) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        match tenure_core::backup::read(bytes.as_slice()) {
            Ok(b) => {
                prop_assert_eq!(bytes, original.into_bytes(), "only the intact file reads");
                prop_assert!(b.table.verify().is_ok());
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}

#[test]
fn tn_bak_002_each_kind_of_damage_names_its_line() {
    let text = busy_backup();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len() as u64;
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let read = |t: &str| tenure_core::backup::read(t.as_bytes());
    assert!(read(&text).is_ok(), "the intact backup reads");
    // Cut short: no trailer.
    let e = read(&join(&lines[..lines.len() - 1])).expect_err("truncated");
    assert_eq!(e.line, n, "{e}");
    assert!(e.message.contains("trailer"), "{e}");
    // Cut inside a line.
    let e = read(&text[..text.len() - 3]).expect_err("cut in a line");
    assert_eq!(e.line, n, "{e}");
    // A lease line before the lock lines.
    let lease = lines
        .iter()
        .position(|l| l.contains(r#""type":"lease""#))
        .expect("a lease line");
    let mut reordered = lines.clone();
    let moved = reordered.remove(lease);
    reordered.insert(1, moved);
    let e = read(&join(&reordered)).expect_err("reordered");
    assert_eq!(e.line, 2, "the lease, before the lock it names: {e}");
    // Another format: the first line says so.
    let e = read("{\"type\":\"header\",\"format\":\"etcd-snapshot\"}\n").expect_err("foreign");
    assert_eq!(e.line, 1, "{e}");
    let e = read("tenure-snapshot\0\x01").expect_err("binary");
    assert_eq!(e.line, 1, "{e}");
    // A changed field: the checksum (or the digest) catches it.
    let changed = text.replacen(r#""fencing_token":1"#, r#""fencing_token":9"#, 1);
    assert_ne!(changed, text);
    let e = read(&changed).expect_err("changed");
    assert_eq!(e.line, n, "the trailer's checksum: {e}");
    // Empty.
    assert_eq!(read("").expect_err("empty").line, 0);
}

#[test]
fn tn_sec_002_a_length_prefix_of_2_to_the_60_is_refused_without_allocating_it() {
    // The format number, then a varint claiming 2^60 tenants.
    let mut bytes = postcard::to_stdvec(&tenure_core::SNAPSHOT_FORMAT).expect("u32");
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(Table::restore(&bytes).is_err());
    assert!(
        Table::restore(&busy_snapshot()).is_ok(),
        "the real one restores"
    );
}
