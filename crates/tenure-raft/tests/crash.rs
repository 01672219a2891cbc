//! Crash and reopen on the file disk (the raft log in fjall, the state in
//! sled): a child process writes through the stores and aborts (no
//! destructors, no clean shutdown); the parent reopens the same directory
//! and finds the same vote, log, committed index and state. And a data
//! directory from the builds that kept the log in sled opens with its log
//! moved out of sled.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::process::Command;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder, Vote};
use tenure_core::{Acquire, TableConfig};
use tenure_raft::types::Entry;
use tenure_raft::{FileDisk, LogId, LogStore, NodeId, Proposal, StateMachineStore};

const CHILD: &str = "TENURE_CRASH_CHILD_DIR";

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

fn entry(index: u64) -> Entry {
    let command = tenure_core::Command::Acquire(Acquire {
        tenant: "t".into(),
        key: format!("k{}", index % 4),
        owner: format!("o{index}"),
        request_id: format!("r{index}"),
        ttl_ms: 10_000,
        wait_timeout_ms: 1_000,
    });
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Proposal::one(index, command)),
    }
}

fn digest(sm: &StateMachineStore<FileDisk>) -> String {
    sm.reader().read().table.digest_hex()
}

/// The child's half: write, snapshot at 10, apply to 20, then abort.
async fn write_and_abort(dir: &Path) {
    let disk = FileDisk::open(dir).expect("the disk opens");
    let mut log = LogStore::new(disk.clone());
    let mut sm = StateMachineStore::open(disk, TableConfig::default()).expect("sm opens");
    log.save_vote(&Vote::new_committed(3, 1))
        .await
        .expect("vote");
    log.blocking_append((1..=20).map(entry))
        .await
        .expect("append");
    log.save_committed(Some(log_id(20)))
        .await
        .expect("committed");
    sm.apply((1..=10).map(entry)).await.expect("apply");
    sm.build_snapshot().await.expect("snapshot");
    std::fs::write(dir.join("digest-10"), digest(&sm)).expect("write digest");
    sm.apply((11..=20).map(entry)).await.expect("apply");
    std::fs::write(dir.join("digest-20"), digest(&sm)).expect("write digest");
    // The committed id rides along with the next flush: entry 21.
    log.blocking_append([entry(21)]).await.expect("append");
    std::process::abort();
}

#[tokio::test]
async fn tn_repl_001_file_stores_survive_an_abort_with_vote_log_committed_and_state() {
    if let Ok(dir) = std::env::var(CHILD) {
        write_and_abort(Path::new(&dir)).await;
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "tn_repl_001_file_stores_survive_an_abort_with_vote_log_committed_and_state",
        ])
        .env(CHILD, dir.path())
        .status()
        .expect("child runs");
    assert!(!status.success(), "the child aborts");

    let disk = FileDisk::open(dir.path()).expect("the disk reopens after the abort");
    let mut log = LogStore::new(disk.clone());
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(20)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(21)));
    let entries = log.try_get_log_entries(1..=21).await.unwrap();
    assert_eq!(entries.len(), 21);
    assert_eq!(entries[4], entry(5));

    let mut sm = StateMachineStore::open(disk, TableConfig::default()).expect("sm reopens");
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied,
        Some(log_id(10)),
        "state comes back from the snapshot"
    );
    let want = |name| std::fs::read_to_string(dir.path().join(name)).expect("digest file");
    assert_eq!(digest(&sm), want("digest-10"));
    // openraft re-applies the committed log after the snapshot: same state.
    sm.apply(entries[10..20].iter().cloned()).await.unwrap();
    assert_eq!(digest(&sm), want("digest-20"));
}

#[tokio::test]
async fn tn_repl_001_a_corrupt_snapshot_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let disk = FileDisk::open(dir.path()).unwrap();
        let mut sm = StateMachineStore::open(disk.clone(), TableConfig::default()).unwrap();
        sm.apply((1..=3).map(entry)).await.unwrap();
        sm.build_snapshot().await.unwrap();
        let tree = tenure_raft::Space::Snapshot;
        use tenure_raft::Disk as _;
        let mut bytes = disk.get(tree, b"current").unwrap().unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        bytes.truncate(n - 1);
        disk.put(tree, vec![(b"current".to_vec(), bytes)]).unwrap();
        disk.flush().await.unwrap();
    }
    let disk = FileDisk::open(dir.path()).unwrap();
    assert!(StateMachineStore::open(disk, TableConfig::default()).is_err());
}

/// Opens `dir` with `open` once the stores of the last opening have let it
/// go (their flusher task ends a moment after the last handle is dropped,
/// and with it sled's lock on the directory).
async fn reopen<T, E: std::fmt::Display>(dir: &Path, open: impl Fn(&Path) -> Result<T, E>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open(dir) {
            Ok(opened) => return opened,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the directory opens: {e}"),
        }
    }
}

/// Writes what a node of the builds that kept the raft log in sled left in
/// its data directory: entries under their big-endian index in the `log`
/// tree, postcard-encoded; vote and committed id in the `meta` tree.
fn old_data_dir(dir: &Path) {
    fn bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).expect("postcard encodes it")
    }
    let db = sled::Config::new().path(dir).open().expect("sled opens");
    let put = |tree: &str, k: &[u8], v: Vec<u8>| {
        let tree = db.open_tree(tree).expect("a tree");
        tree.insert(k, v).expect("sled writes");
    };
    for e in (1..=5).map(entry) {
        put("log", &e.log_id.index.to_be_bytes(), bytes(&e));
    }
    put("meta", b"vote", bytes(&Vote::<NodeId>::new_committed(3, 1)));
    put("meta", b"committed", bytes(&Some(log_id(4))));
    db.flush().expect("sled flushes");
}

#[tokio::test]
async fn tn_dur_003_an_old_data_directory_opens_with_its_log_and_vote_moved_out_of_sled() {
    let dir = tempfile::tempdir().expect("temp dir");
    old_data_dir(dir.path());
    for round in 0..2 {
        let disk = reopen(dir.path(), FileDisk::open).await;
        let mut log = LogStore::new(disk.clone());
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(3, 1)),
            "round {round}"
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(4)));
        assert_eq!(
            log.try_get_log_entries(1..=5).await.unwrap(),
            (1..=5).map(entry).collect::<Vec<_>>()
        );
        // The log goes on in the new store.
        if round == 0 {
            log.blocking_append([entry(6)]).await.expect("append");
        }
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(6))
        );
    }
    // sled keeps none of it: an old build would find no log to run on.
    let db = reopen(dir.path(), |d| sled::Config::new().path(d).open()).await;
    for tree in ["log", "meta"] {
        assert!(db.open_tree(tree).expect("a tree").is_empty(), "{tree}");
    }
    assert!(dir.path().join(tenure_raft::disk::LOG_DIR).is_dir());
}
