//! The durable medium under the raft stores, and its simulated twin.
//!
//! Both stores (log and state machine) write through a [`Disk`]: keyed
//! records in a few [`Space`]s, and an explicit `flush` that is the only
//! durability barrier. [`SledDisk`] is the production medium. [`SimDisk`] is
//! the simulations' medium: it keeps what was written and what was flushed
//! apart, and [`SimDisk::crash`] throws away everything written since the last
//! flush, so a simulated crash loses exactly what a real one may lose. It
//! lives outside the simulated host, so a restarted node reopens it.
//!
//! Operators, note: sled flushes with `sync_file_range` on Linux, which is
//! durable across process crashes but, upstream reports, not guaranteed
//! across power loss.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Why the disk failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// sled reported an error (IO, corruption, a held lock).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be encoded or decoded.
    #[error("record {what}: {detail}")]
    Codec {
        /// Which record.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// One keyed record.
pub type Record = (Vec<u8>, Vec<u8>);

/// A group of records; each is a sled tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Log entries by big-endian index.
    Log,
    /// Vote, committed log id, purge point.
    Meta,
    /// The current snapshot.
    Snapshot,
}

impl Space {
    fn name(self) -> &'static str {
        match self {
            Space::Log => "log",
            Space::Meta => "meta",
            Space::Snapshot => "snapshot",
        }
    }
}

/// Keyed records with one durability barrier.
pub trait Disk: Clone + Send + Sync + 'static {
    /// The record under `key`.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError>;
    /// Writes records; visible at once, durable after the next flush.
    fn put(&self, space: Space, records: Vec<Record>) -> Result<(), DiskError>;
    /// Removes the records with `from <= key` (and `key < to` when given).
    fn remove_range(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<(), DiskError>;
    /// The records with `from <= key` (and `key < to` when given), in key order.
    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Record>, DiskError>;
    /// The record with the greatest key.
    fn last(&self, space: Space) -> Result<Option<Record>, DiskError>;
    /// Makes every write so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), DiskError>> + Send;
    /// How many flushes (fsyncs) this disk has done: with the commit count,
    /// it shows whether appends are batched.
    fn flushes(&self) -> u64;
}

fn upper(to: Option<&[u8]>) -> Bound<Vec<u8>> {
    to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.to_vec()))
}

/// The production medium: one sled database, a tree per space.
#[derive(Clone, Debug)]
pub struct SledDisk {
    db: sled::Db,
    trees: [sled::Tree; 3],
    flushes: Arc<AtomicU64>,
}

impl SledDisk {
    /// Opens (or creates) the database in `dir`. sled holds an exclusive
    /// lock on it until every handle is dropped. sled's own periodic flush
    /// is off: every write that must be durable is flushed explicitly (the
    /// log's group commit, the vote, snapshots), and a timer flush in
    /// between only competes with those for the disk.
    pub fn open(dir: &Path) -> Result<SledDisk, DiskError> {
        let db = sled::Config::new().path(dir).flush_every_ms(None).open()?;
        let trees = [
            db.open_tree(Space::Log.name())?,
            db.open_tree(Space::Meta.name())?,
            db.open_tree(Space::Snapshot.name())?,
        ];
        Ok(SledDisk {
            db,
            trees,
            flushes: Arc::default(),
        })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        &self.trees[space as usize]
    }
}

impl Disk for SledDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn put(&self, space: Space, records: Vec<Record>) -> Result<(), DiskError> {
        let mut batch = sled::Batch::default();
        for (k, v) in records {
            batch.insert(k, v);
        }
        Ok(self.tree(space).apply_batch(batch)?)
    }

    fn remove_range(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<(), DiskError> {
        let tree = self.tree(space);
        let mut batch = sled::Batch::default();
        for item in tree.range::<Vec<u8>, _>((Bound::Included(from.to_vec()), upper(to))) {
            batch.remove(item?.0);
        }
        Ok(tree.apply_batch(batch)?)
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Record>, DiskError> {
        self.tree(space)
            .range::<Vec<u8>, _>((Bound::Included(from.to_vec()), upper(to)))
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(DiskError::from)
            })
            .collect()
    }

    fn last(&self, space: Space) -> Result<Option<Record>, DiskError> {
        Ok(self
            .tree(space)
            .last()?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    async fn flush(&self) -> Result<(), DiskError> {
        self.db.flush_async().await?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

type Records = BTreeMap<Vec<u8>, Vec<u8>>;

enum Write {
    Put(Space, Vec<Record>),
    Remove(Space, Vec<u8>, Option<Vec<u8>>),
}

#[derive(Default)]
struct SimState {
    /// What the process sees: every write, flushed or not.
    visible: [Records; 3],
    /// What survives a crash.
    durable: [Records; 3],
    /// Writes since the last flush, in order.
    pending: Vec<Write>,
    flushes: u64,
}

fn apply(records: &mut [Records; 3], write: &Write) {
    match write {
        Write::Put(space, kvs) => {
            for (k, v) in kvs {
                records[*space as usize].insert(k.clone(), v.clone());
            }
        }
        Write::Remove(space, from, to) => {
            let map = &mut records[*space as usize];
            let doomed: Vec<Vec<u8>> = map
                .range::<Vec<u8>, _>((Bound::Included(from.clone()), upper(to.as_deref())))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                map.remove(&k);
            }
        }
    }
}

/// The simulations' medium: in memory, losing unflushed writes on a crash.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("flushes", &self.flushes())
            .finish()
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// A crash: everything written since the last flush is gone.
    pub fn crash(&self) {
        self.with(|s| {
            s.pending.clear();
            s.visible = s.durable.clone();
        });
    }
}

impl Disk for SimDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        Ok(self.with(|s| s.visible[space as usize].get(key).cloned()))
    }

    fn put(&self, space: Space, records: Vec<Record>) -> Result<(), DiskError> {
        self.with(|s| {
            let write = Write::Put(space, records);
            apply(&mut s.visible, &write);
            s.pending.push(write);
        });
        Ok(())
    }

    fn remove_range(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<(), DiskError> {
        self.with(|s| {
            let write = Write::Remove(space, from.to_vec(), to.map(<[u8]>::to_vec));
            apply(&mut s.visible, &write);
            s.pending.push(write);
        });
        Ok(())
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Record>, DiskError> {
        Ok(self.with(|s| {
            s.visible[space as usize]
                .range::<Vec<u8>, _>((Bound::Included(from.to_vec()), upper(to)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    fn last(&self, space: Space) -> Result<Option<Record>, DiskError> {
        Ok(self.with(|s| {
            s.visible[space as usize]
                .last_key_value()
                .map(|(k, v)| (k.clone(), v.clone()))
        }))
    }

    async fn flush(&self) -> Result<(), DiskError> {
        self.with(|s| {
            let pending = std::mem::take(&mut s.pending);
            for write in &pending {
                apply(&mut s.durable, write);
            }
            s.flushes += 1;
        });
        Ok(())
    }

    fn flushes(&self) -> u64 {
        self.with(|s| s.flushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sim_crash_keeps_exactly_the_flushed_writes() {
        let disk = SimDisk::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        disk.put(Space::Log, vec![(vec![1], vec![10]), (vec![2], vec![20])])
            .unwrap();
        rt.block_on(disk.flush()).unwrap();
        disk.put(Space::Log, vec![(vec![3], vec![30])]).unwrap();
        disk.remove_range(Space::Log, &[1], Some(&[2])).unwrap();
        assert_eq!(disk.scan(Space::Log, &[], None).unwrap().len(), 2);
        disk.crash();
        let keys: Vec<Vec<u8>> = disk
            .scan(Space::Log, &[], None)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(keys, vec![vec![1], vec![2]]);
        assert_eq!(disk.flushes(), 1);
    }
}
