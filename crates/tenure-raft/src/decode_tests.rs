//! Untrusted bytes into the raft decoders (TN-SEC-002): what a peer sends
//! (vote, append-entries, snapshot chunks, control) and what the disk holds
//! (log entries, the vote) is decoded or refused, never a panic, and a
//! length prefix never allocates what it claims.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{Entry, Vote};
use proptest::prelude::*;

use crate::log_store::decode as from_disk;
use crate::transport::{Control, FORMAT, decode, pb};
use crate::types::{NodeId, TypeConfig};

fn message(format: u32, payload: Vec<u8>) -> pb::RaftMessage {
    pb::RaftMessage { format, payload }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tn_sec_002_arbitrary_peer_payloads_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
        foreign in any::<bool>(),
    ) {
        let m = message(if foreign { FORMAT + 1 } else { FORMAT }, payload);
        let _ = decode::<VoteRequest<NodeId>>(&m);
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(&m);
        let _ = decode::<InstallSnapshotRequest<TypeConfig>>(&m);
        let _ = decode::<Control>(&m);
        if foreign {
            prop_assert!(decode::<Control>(&m).is_err(), "another format is refused");
        }
    }

    #[test]
    fn tn_sec_002_arbitrary_disk_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = from_disk::<Entry<TypeConfig>>("entry", &bytes);
        let _ = from_disk::<Vote<NodeId>>("vote", &bytes);
    }
}

#[test]
fn tn_sec_002_a_huge_length_prefix_is_refused_without_allocating_it() {
    // Vote fields, then an entries vector claiming 2^60 elements.
    let mut payload = vec![1, 1, 0, 1, 0, 0];
    payload.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    let m = message(FORMAT, payload);
    assert!(decode::<AppendEntriesRequest<TypeConfig>>(&m).is_err());
}
