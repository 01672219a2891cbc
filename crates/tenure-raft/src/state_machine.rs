//! The state machine: the lease table, applied from the log through
//! tenure-core only, with snapshots persisted on the [`Disk`].
//!
//! The table lives in memory; what survives a restart is the latest
//! snapshot, and openraft re-applies the committed log after it. Applying
//! is `Table::apply` and nothing else: no lock logic lives here. Readers (the
//! lock service, status pages) share the table through a [`TableReader`].

use std::io::Cursor;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use serde::{Deserialize, Serialize};
use tenure_core::{Applied, ApplyCtx, AuditEvent, Table, TableConfig};
use tokio::sync::broadcast;

use crate::audit::{self, AuditHistory, AuditRetention};
use crate::disk::{Disk, DiskError, Space};
use crate::log_store::{decode, encode};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const CURRENT: &[u8] = b"current";

/// The table and how far the log has been applied to it.
#[derive(Debug, Default)]
pub struct Applier {
    /// The lease table.
    pub table: Table,
    /// The last log id applied.
    pub last_applied: Option<LogId>,
    /// The membership in force as of `last_applied`.
    pub membership: StoredMembership,
}

/// Shared read access to the applied table.
#[derive(Clone, Debug)]
pub struct TableReader {
    inner: Arc<RwLock<Applier>>,
    notices: broadcast::Sender<Arc<Notice>>,
    history: AuditHistory,
}

/// What one applied entry changed: its audit events, for the leader's
/// timers and for watchers. Only entries with events are announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The log id of the entry.
    pub log_id: LogId,
    /// The audit events it appended.
    pub events: Vec<AuditEvent>,
}

/// How many notices a slow listener may fall behind before it is told it
/// lagged (and rebuilds from the table).
const NOTICE_BACKLOG: usize = 16 * 1024;

impl TableReader {
    /// Notices of every applied entry that changed something, from now on.
    /// A listener that falls behind gets `Lagged` and must re-read the table.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notice>> {
        self.notices.subscribe()
    }

    /// Reads the table; writers (the apply loop) wait meanwhile, so keep it short.
    pub fn read(&self) -> RwLockReadGuard<'_, Applier> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit events this node applied and keeps on its disk.
    pub fn history(&self) -> &AuditHistory {
        &self.history
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applier> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A persisted snapshot: openraft's metadata and the table's bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine of one node.
#[derive(Clone, Debug)]
pub struct StateMachineStore<D: Disk> {
    disk: D,
    shared: TableReader,
    /// Counts snapshots built by this process, for unique snapshot ids.
    built: u64,
    /// How much audit history to keep.
    retention: AuditRetention,
    /// Events written since the history was last pruned.
    since_prune: u64,
}

fn sm_read(e: DiskError) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write(e: DiskError) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

impl<D: Disk> StateMachineStore<D> {
    /// Opens the state machine on `disk`: the persisted snapshot, if any, is
    /// restored (and refused if corrupt); otherwise an empty table with
    /// `config`.
    pub fn open(disk: D, config: TableConfig) -> Result<StateMachineStore<D>, StorageError> {
        let mut applier = Applier {
            table: Table::new(config).map_err(|e| StorageIOError::read_state_machine(&e))?,
            ..Applier::default()
        };
        if let Some(bytes) = disk.get(Space::Snapshot, CURRENT).map_err(sm_read)? {
            let stored: StoredSnapshot = decode("snapshot", &bytes).map_err(sm_read)?;
            applier.table = Table::restore(&stored.data)
                .map_err(|e| StorageIOError::read_snapshot(Some(stored.meta.signature()), &e))?;
            applier.last_applied = stored.meta.last_log_id;
            applier.membership = stored.meta.last_membership;
        }
        Ok(StateMachineStore {
            shared: TableReader {
                inner: Arc::new(RwLock::new(applier)),
                notices: broadcast::channel(NOTICE_BACKLOG).0,
                history: AuditHistory::on(disk.clone()),
            },
            disk,
            built: 0,
            retention: AuditRetention::default(),
            since_prune: 0,
        })
    }

    /// Keeps the audit history `retention` allows.
    pub fn with_retention(mut self, retention: AuditRetention) -> StateMachineStore<D> {
        self.retention = retention;
        self
    }

    /// Read access to the applied table, for the services.
    pub fn reader(&self) -> TableReader {
        self.shared.clone()
    }

    /// Encodes `stored` and writes it as the current snapshot, durably, on
    /// a blocking thread: a large table takes a while to encode, and the
    /// node's tasks (heartbeats, appends, answers) go on meanwhile.
    async fn persist(&self, stored: StoredSnapshot) -> Result<StoredSnapshot, StorageError> {
        let sig = Some(stored.meta.signature());
        let io = |e: DiskError| StorageError::from(StorageIOError::write_snapshot(sig.clone(), &e));
        let disk = self.disk.clone();
        let stored = self
            .disk
            .off_thread("writing a snapshot", move || {
                let bytes = encode("snapshot", &stored)?;
                disk.put(Space::Snapshot, vec![(CURRENT.to_vec(), bytes)])?;
                Ok::<_, DiskError>(stored)
            })
            .await
            .and_then(|r| r)
            .map_err(io)?;
        self.disk.flush().await.map_err(io)?;
        Ok(stored)
    }
}

impl<D: Disk> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<D> {
    /// Copies the table under the read lock (applies wait only for the
    /// copy), then encodes and writes the copy without the lock.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let start = tokio::time::Instant::now();
        self.built += 1;
        let (meta, table) = {
            let a = self.shared.read();
            let last = a.last_applied;
            let snapshot_id = match last {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.built),
                None => format!("none-{}", self.built),
            };
            let meta = SnapshotMeta {
                last_log_id: last,
                last_membership: a.membership.clone(),
                snapshot_id,
            };
            (meta, a.table.clone())
        };
        metrics::histogram!("tenure_snapshot_copy_duration_seconds")
            .record(start.elapsed().as_secs_f64());
        let sig = Some(meta.signature());
        let data = self
            .disk
            .off_thread("encoding a snapshot", move || table.snapshot())
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        let stored = self.persist(StoredSnapshot { meta, data }).await?;
        metrics::gauge!("tenure_snapshot_size_bytes").set(stored.data.len() as f64);
        metrics::histogram!("tenure_snapshot_build_duration_seconds")
            .record(start.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<D: Disk> RaftStateMachine<TypeConfig> for StateMachineStore<D> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let start = tokio::time::Instant::now();
        let mut a = self.shared.write();
        let mut replies = Vec::new();
        let mut kept = Vec::new();
        let (mut last_seq, mut now_ms) = (0, 0);
        for entry in entries {
            a.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(p) => {
                    let mut answers = Vec::with_capacity(p.commands.len());
                    let mut events = Vec::new();
                    for command in p.commands {
                        let ctx = ApplyCtx {
                            index: a.table.next_index(),
                            at_ms: p.at_ms,
                        };
                        let applied = a.table.apply(ctx, command);
                        events.extend(applied.events.iter().cloned());
                        answers.push(applied);
                    }
                    if !events.is_empty() {
                        now_ms = now_ms.max(p.at_ms);
                        for e in &events {
                            let bytes = audit::encode(e).map_err(sm_write)?;
                            kept.push((audit::key(e.seq).to_vec(), bytes));
                            last_seq = e.seq;
                        }
                        let notice = Notice {
                            log_id: entry.log_id,
                            events,
                        };
                        // No listener is fine: nobody leads or watches here.
                        let _ = self.shared.notices.send(Arc::new(notice));
                    }
                    answers
                }
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            replies.push(reply);
        }
        // The events go to disk before the table is readable again: a
        // reader that sees a sequence finds its event in the history.
        if !kept.is_empty() {
            self.since_prune += kept.len() as u64;
            self.disk.put(Space::Audit, kept).map_err(sm_write)?;
            if self.since_prune >= audit::PRUNE_EVERY {
                self.since_prune = 0;
                audit::prune(&self.disk, self.retention, last_seq, now_ms).map_err(sm_write)?;
            }
        }
        drop(a);
        metrics::histogram!("tenure_raft_apply_seconds").record(start.elapsed().as_secs_f64());
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let table = Table::restore(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        // The entries the snapshot stands for were never applied here: the
        // history kept so far does not join up with what comes next.
        self.disk
            .remove_range(Space::Audit, &[], None)
            .map_err(sm_write)?;
        // Durable now: a restart must not find the old history beside the
        // new snapshot (the log's flushes do not cover it).
        self.disk.flush().await.map_err(sm_write)?;
        let mut a = self.shared.write();
        a.table = table;
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self.disk.get(Space::Snapshot, CURRENT).map_err(sm_read)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = decode("snapshot", &bytes).map_err(sm_read)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
