//! Untrusted bytes into the table's decoders (TN-SEC-002): a snapshot read
//! from a peer, a disk or a backup is refused or restored, never a panic,
//! and a restored table always passes its own invariant check.

mod common;

use common::Driver;
use proptest::prelude::*;
use tenure_core::Table;

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
