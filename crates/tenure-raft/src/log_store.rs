//! The raft log on a [`Disk`]: entries, vote, committed log id, purge point.
//!
//! Entries are keyed by their big-endian index, so key order is log order.
//! `append` writes the entries and hands openraft's callback to a flusher
//! task, which tells openraft the entries are durable only after a log flush
//! (`Disk::flush_log`).
//! Appends that arrive while a flush runs wait for the next one, which then
//! covers all of them (group commit): one fsync per batch, not per entry.
//! The vote is flushed before `save_vote` returns. The committed log id is
//! written without a flush of its own: it rides along with the next flush,
//! and a committed id lost in a crash is recomputed by the cluster. A purge
//! records its new purge point durably before it removes entries, so a crash
//! in between leaves only entries below the purge point, which are ignored.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::disk::{Disk, DiskError, Space};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, DiskError> {
    postcard::to_stdvec(value).map_err(|e| DiskError::Codec {
        what,
        detail: e.to_string(),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DiskError> {
    postcard::from_bytes(bytes).map_err(|e| DiskError::Codec {
        what,
        detail: e.to_string(),
    })
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The raft log of one node.
#[derive(Clone)]
pub struct LogStore<D: Disk> {
    disk: D,
    /// Callbacks of appends whose entries are written but not yet flushed.
    flusher: mpsc::UnboundedSender<LogFlushed<TypeConfig>>,
}

impl<D: Disk> std::fmt::Debug for LogStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl<D: Disk> LogStore<D> {
    /// The log kept on `disk`; starts its flusher task on the current tokio
    /// runtime (it ends when the last handle is dropped).
    pub fn new(disk: D) -> LogStore<D> {
        let (flusher, pending) = mpsc::unbounded_channel();
        tokio::spawn(flush_in_batches(disk.clone(), pending));
        LogStore { disk, flusher }
    }

    fn meta<T: DeserializeOwned>(
        &self,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, DiskError> {
        self.disk
            .get(Space::Meta, k)?
            .map(|b| decode(what, &b))
            .transpose()
    }

    fn put_meta<T: Serialize>(
        &self,
        what: &'static str,
        k: &[u8],
        value: &T,
    ) -> Result<(), DiskError> {
        self.disk
            .put(Space::Meta, vec![(k.to_vec(), encode(what, value)?)])
    }
}

fn read_err(e: DiskError) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: DiskError) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl<D: Disk> RaftLogReader<TypeConfig> for LogStore<D> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let to_key = to.map(key);
        let records = self
            .disk
            .scan(Space::Log, &key(from), to_key.as_ref().map(|k| &k[..]))
            .map_err(read_err)?;
        records
            .iter()
            .map(|(_, v)| decode::<Entry>("log entry", v).map_err(read_err))
            .collect()
    }
}

impl<D: Disk> RaftLogStorage<TypeConfig> for LogStore<D> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.meta("purge point", PURGED).map_err(read_err)?;
        let last = self.disk.last(Space::Log).map_err(read_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(decode::<Entry>("log entry", &v).map_err(read_err)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let io = |e: DiskError| StorageError::from(StorageIOError::write_vote(&e));
        self.put_meta("vote", VOTE, vote).map_err(io)?;
        self.disk.flush_log().await.map_err(io)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote", VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta("committed", COMMITTED, &committed)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .meta::<Option<LogId>>("committed", COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let records = entries
            .into_iter()
            .map(|e| Ok((key(e.log_id.index).to_vec(), encode("log entry", &e)?)))
            .collect::<Result<Vec<_>, DiskError>>()
            .map_err(write_err)?;
        self.disk.put(Space::Log, records).map_err(write_err)?;
        if let Err(unsent) = self.flusher.send(callback) {
            // The flusher is gone (the runtime is shutting down): flush here.
            let flushed = self.disk.flush_log().await;
            let outcome = flushed
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            unsent.0.log_io_completed(outcome);
            return flushed.map_err(write_err);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk
            .remove_range(Space::Log, &key(log_id.index), None)
            .map_err(write_err)?;
        self.disk.flush_log().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta("purge point", PURGED, &log_id)
            .map_err(write_err)?;
        self.disk.flush_log().await.map_err(write_err)?;
        let end = log_id.index.checked_add(1).map(key);
        self.disk
            .remove_range(Space::Log, &key(0), end.as_ref().map(|k| &k[..]))
            .map_err(write_err)
    }
}

/// Flushes once for every batch of appends that queued up meanwhile, then
/// acknowledges them in order.
async fn flush_in_batches<D: Disk>(
    disk: D,
    mut pending: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>,
) {
    let mut batch = Vec::new();
    while pending.recv_many(&mut batch, usize::MAX).await > 0 {
        let flushed = disk.flush_log().await;
        if let Err(e) = &flushed {
            tracing::error!(error = %e, appends = batch.len(), "flushing the raft log failed");
        }
        for callback in batch.drain(..) {
            let outcome = flushed
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(outcome);
        }
    }
}
