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
//! sled flushes with `sync_file_range` on Linux, which survives a process
//! crash but flushes neither the drive's write cache nor the file's
//! metadata. So after each of sled's flushes [`SledDisk`] calls `fdatasync`
//! on sled's log file, `fsync` on every blob file it has not synced yet, and
//! `fsync` on the directories whose entries changed (a snapshot renamed, a
//! blob created): a flush that returned is on stable storage, and only then
//! does openraft see an append or a vote as done. docs/storage.md has the
//! details, and what this cannot do about drives that lie about flushes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Why the disk failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// sled reported an error (IO, corruption, a held lock).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Syncing sled's files to stable storage failed.
    #[error("fsync of {path}: {source}")]
    Sync {
        /// The file or directory.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// Work handed to a blocking thread did not finish (it panicked, or the
    /// runtime shut down).
    #[error("{what} on a blocking thread: {detail}")]
    Worker {
        /// What the work was.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
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
    /// Audit events applied, by big-endian sequence number.
    Audit,
}

/// How many spaces there are.
const SPACES: usize = 4;

impl Space {
    fn name(self) -> &'static str {
        match self {
            Space::Log => "log",
            Space::Meta => "meta",
            Space::Snapshot => "snapshot",
            Space::Audit => "audit",
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
    /// At most `limit` records with `from <= key`, in key order.
    fn scan_limit(&self, space: Space, from: &[u8], limit: usize)
    -> Result<Vec<Record>, DiskError>;
    /// The record with the greatest key.
    fn last(&self, space: Space) -> Result<Option<Record>, DiskError>;
    /// Makes every write so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), DiskError>> + Send;
    /// How many flushes (fsyncs) this disk has done: with the commit count,
    /// it shows whether appends are batched.
    fn flushes(&self) -> u64;
    /// Runs `work`, named `what`, where it holds up none of the node's tasks:
    /// CPU-heavy work such as encoding and writing a snapshot. A real disk
    /// runs it on a blocking thread; the simulated disk runs it in place,
    /// because a simulation must stay deterministic.
    fn off_thread<R, F>(
        &self,
        what: &'static str,
        work: F,
    ) -> impl Future<Output = Result<R, DiskError>> + Send
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static;
}

fn upper(to: Option<&[u8]>) -> Bound<Vec<u8>> {
    to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.to_vec()))
}

/// The page cache [`SledDisk::open`] gives sled: 64 MiB (sled's own default
/// is 1 GiB, which a lock service's leader would fill with log it rarely
/// reads back).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The production medium: one sled database, a tree per space.
#[derive(Clone, Debug)]
pub struct SledDisk {
    db: sled::Db,
    trees: [sled::Tree; SPACES],
    flushes: Arc<AtomicU64>,
    /// sled's files, synced after each of its flushes; `None`: sled's own
    /// flush alone (`--unsafe-no-fsync`, for measuring what syncs cost).
    files: Option<Arc<Files>>,
}

/// sled's files on disk, and what has been synced of them.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    /// sled's log, where every write lands.
    log: std::fs::File,
    /// The names in `dir` and in `dir/blobs` at the last sync: a change
    /// means the directory's entries must be synced too.
    seen: Mutex<(BTreeSet<OsString>, BTreeSet<OsString>)>,
}

fn sync_error(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Sync {
        path: path.display().to_string(),
        source,
    }
}

fn names(dir: &Path) -> Result<BTreeSet<OsString>, DiskError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name()).map_err(sync_error(dir)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(sync_error(dir)(e)),
    }
}

/// `fsync` of a file or a directory, opened read-only (Linux syncs the
/// inode whatever the descriptor's mode).
fn fsync(path: &Path) -> Result<(), DiskError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(sync_error(path))
}

impl Files {
    fn open(dir: &Path) -> Result<Files, DiskError> {
        let path = dir.join("db");
        let log = std::fs::File::open(&path).map_err(sync_error(&path))?;
        let files = Files {
            dir: dir.to_owned(),
            log,
            seen: Mutex::new((BTreeSet::new(), BTreeSet::new())),
        };
        files.sync()?;
        Ok(files)
    }

    /// Puts on stable storage everything sled has flushed.
    fn sync(&self) -> Result<(), DiskError> {
        self.log
            .sync_data()
            .map_err(sync_error(&self.dir.join("db")))?;
        let blobs_dir = self.dir.join("blobs");
        let blobs = names(&blobs_dir)?;
        let top = names(&self.dir)?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for new in blobs.difference(&seen.1) {
            fsync(&blobs_dir.join(new))?;
        }
        if blobs != seen.1 {
            fsync(&blobs_dir)?;
        }
        if top != seen.0 {
            fsync(&self.dir)?;
        }
        *seen = (top, blobs);
        Ok(())
    }
}

impl SledDisk {
    /// Opens (or creates) the database in `dir`. sled holds an exclusive
    /// lock on it until every handle is dropped. sled's own periodic flush
    /// is off: every write that must be durable is flushed explicitly (the
    /// log's group commit, the vote, snapshots), and a timer flush in
    /// between only competes with those for the disk.
    pub fn open(dir: &Path) -> Result<SledDisk, DiskError> {
        SledDisk::open_with(dir, true, DEFAULT_CACHE_BYTES)
    }

    /// [`SledDisk::open`] with a page cache of `cache_bytes`; `sync` false
    /// leaves durability to sled's own flush (survives a process crash, not
    /// a power loss): only for measuring what the syncs cost.
    pub fn open_with(dir: &Path, sync: bool, cache_bytes: u64) -> Result<SledDisk, DiskError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(cache_bytes)
            .open()?;
        let trees = [
            db.open_tree(Space::Log.name())?,
            db.open_tree(Space::Meta.name())?,
            db.open_tree(Space::Snapshot.name())?,
            db.open_tree(Space::Audit.name())?,
        ];
        db.flush()?;
        let files = if sync {
            Some(Arc::new(Files::open(dir)?))
        } else {
            None
        };
        Ok(SledDisk {
            db,
            trees,
            flushes: Arc::default(),
            files,
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

    fn scan_limit(
        &self,
        space: Space,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, DiskError> {
        self.tree(space)
            .range::<Vec<u8>, _>((Bound::Included(from.to_vec()), Bound::Unbounded))
            .take(limit)
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
        let start = tokio::time::Instant::now();
        self.db.flush_async().await?;
        if let Some(files) = &self.files {
            let files = files.clone();
            tokio::task::spawn_blocking(move || files.sync())
                .await
                .map_err(|e| DiskError::Sync {
                    path: "sled's files".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("tenure_log_flush_duration_seconds")
            .record(start.elapsed().as_secs_f64());
        metrics::counter!("tenure_log_flushes_total").increment(1);
        Ok(())
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    async fn off_thread<R, F>(&self, what: &'static str, work: F) -> Result<R, DiskError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| DiskError::Worker {
                what,
                detail: e.to_string(),
            })
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
    visible: [Records; SPACES],
    /// What survives a crash.
    durable: [Records; SPACES],
    /// Writes since the last flush, in order.
    pending: Vec<Write>,
    flushes: u64,
}

fn apply(records: &mut [Records; SPACES], write: &Write) {
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

    fn scan_limit(
        &self,
        space: Space,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, DiskError> {
        Ok(self.with(|s| {
            s.visible[space as usize]
                .range::<Vec<u8>, _>((Bound::Included(from.to_vec()), Bound::Unbounded))
                .take(limit)
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

    async fn off_thread<R, F>(&self, _what: &'static str, work: F) -> Result<R, DiskError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        Ok(work())
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
