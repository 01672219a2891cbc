//! openraft's own storage suite, against both media: the file disk (the
//! log in fjall, the state in sled) and the simulated disk run the same log
//! store and state machine code.
#![allow(clippy::result_large_err)] // openraft fixes the error type

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tenure_core::TableConfig;
use tenure_raft::{FileDisk, LogStore, NodeId, SimDisk, StateMachineStore, TypeConfig};

struct Sim;

impl StoreBuilder<TypeConfig, LogStore<SimDisk>, StateMachineStore<SimDisk>, ()> for Sim {
    async fn build(
        &self,
    ) -> Result<((), LogStore<SimDisk>, StateMachineStore<SimDisk>), StorageError<NodeId>> {
        let disk = SimDisk::new();
        let sm = StateMachineStore::open(disk.clone(), TableConfig::default())?;
        Ok(((), LogStore::new(disk), sm))
    }
}

struct Files;

impl StoreBuilder<TypeConfig, LogStore<FileDisk>, StateMachineStore<FileDisk>, tempfile::TempDir>
    for Files
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<FileDisk>,
            StateMachineStore<FileDisk>,
        ),
        StorageError<NodeId>,
    > {
        let dir = tempfile::tempdir().expect("a temp dir");
        let disk = FileDisk::open(dir.path()).expect("the disk opens");
        let sm = StateMachineStore::open(disk.clone(), TableConfig::default())?;
        Ok((dir, LogStore::new(disk), sm))
    }
}

#[test]
fn tn_repl_002_openraft_storage_suite_passes_on_the_simulated_disk()
-> Result<(), StorageError<NodeId>> {
    Suite::test_all(Sim)
}

#[test]
fn tn_repl_002_openraft_storage_suite_passes_on_the_file_disk() -> Result<(), StorageError<NodeId>>
{
    Suite::test_all(Files)
}
