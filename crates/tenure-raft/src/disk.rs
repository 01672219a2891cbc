//! The durable medium under the raft stores, and its simulated twin.
//!
//! Both stores (log and state machine) write through a [`Disk`]: keyed
//! records in a few [`Space`]s and two durability barriers. `flush_log`
//! makes the log spaces durable (entries, vote, committed id, purge point):
//! it is on the path of every acknowledgement. `flush` makes everything
//! durable, the state spaces too (snapshot, kept audit history), and runs
//! when a snapshot is stored.
//!
//! [`FileDisk`] is the production medium. The log spaces live in a fjall
//! keyspace whose journal is synced with `fdatasync` on `flush_log`: one
//! write and one `fdatasync` per group commit. The state spaces live in sled;
//! sled flushes with `sync_file_range` on Linux, which survives a process
//! crash but flushes neither the drive's write cache nor the file's
//! metadata, so after sled's flush [`FileDisk`] calls `fdatasync` on sled's
//! log file, `fsync` on every blob file it has not synced yet, and `fsync` on
//! the directories whose entries changed. Either barrier returns only once
//! its writes are on stable storage, and only then does openraft see an
//! append, a vote or a snapshot as done. docs/storage.md has the details, the
//! numbers behind the choice, and what this cannot do about drives that lie
//! about flushes.
//!
//! [`SimDisk`] is the simulations' medium: it keeps what was written and
//! what was flushed apart, with the same two barriers, and
//! [`SimDisk::crash`] throws away everything written since the barrier that
//! covers it, so a simulated crash loses exactly what a real one may lose. It
//! lives outside the simulated host, so a restarted node reopens it.

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
    /// The raft log's store (fjall) reported an error.
    #[error("raft log store: {0}")]
    Log(#[from] fjall::Error),
    /// Moving an old data directory's raft log out of sled failed.
    #[error("moving the raft log out of sled: {0}")]
    Migrate(String),
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
    /// Whether the space belongs to the raft log (entries, vote, committed
    /// id, purge point), which `flush_log` makes durable.
    pub fn is_log(self) -> bool {
        matches!(self, Space::Log | Space::Meta)
    }

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
    /// Makes every write so far to the log spaces ([`Space::is_log`])
    /// durable. Writes to the other spaces may wait for [`Disk::flush`].
    fn flush_log(&self) -> impl Future<Output = Result<(), DiskError>> + Send;
    /// Makes every write so far durable, in every space.
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

/// The page cache [`FileDisk::open`] gives sled, and the block cache it
/// gives the log's store: 64 MiB (sled's own default is 1 GiB, which a lock
/// service's leader would fill with state it rarely reads back).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The directory, inside a node's data directory, that holds the raft log.
pub const LOG_DIR: &str = "raft-log";

/// A memtable of the log's store is written out to a table file once it
/// holds this much: a bound on the memory the log keeps besides the cache.
const LOG_MEMTABLE_BYTES: u64 = 4 << 20;

/// The log's journals are rotated (their memtables written out) once they
/// hold this much, fjall's smallest bound: a bound on disk use and replay.
const LOG_JOURNAL_BYTES: u64 = 64 << 20;

/// Marks a log store as the node's one source of truth for its log: written
/// in the batch that moved an old data directory's log out of sled, or at
/// the creation of a new one.
const LOG_STORE_MARK: &[u8] = b"log-store";

/// The production medium: the raft log in fjall, the state in sled.
#[derive(Clone)]
pub struct FileDisk {
    log: Arc<LogFiles>,
    db: sled::Db,
    trees: [sled::Tree; SPACES],
    flushes: Arc<AtomicU64>,
    /// sled's files, synced after each of its flushes; `None`: sled's own
    /// flush alone (`--unsafe-no-fsync`, for measuring what syncs cost).
    files: Option<Arc<Files>>,
    /// The state spaces' writes not yet flushed, and whether a background
    /// flush of them runs.
    state: Arc<StateFlush>,
}

/// sled keeps what it has not flushed in memory, and one large flush
/// competes for the drive with the log's `fdatasync`: so the state spaces
/// are also flushed in the background, off the acknowledgement path, at
/// most every [`STATE_FLUSH_EVERY`] while they are written to.
#[derive(Debug, Default)]
struct StateFlush {
    dirty: std::sync::atomic::AtomicBool,
    running: std::sync::atomic::AtomicBool,
    last: Mutex<Option<tokio::time::Instant>>,
}

/// How often, at most, the state spaces are flushed in the background.
const STATE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl std::fmt::Debug for FileDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDisk")
            .field("flushes", &self.flushes())
            .finish_non_exhaustive()
    }
}

/// The raft log's store: a fjall database with a keyspace per log space.
struct LogFiles {
    db: fjall::Database,
    log: fjall::Keyspace,
    meta: fjall::Keyspace,
    /// `SyncData`: `fdatasync` of the journal; `Buffer`: written to the
    /// kernel only (`--unsafe-no-fsync`).
    persist: fjall::PersistMode,
}

impl LogFiles {
    fn open(dir: &Path, sync: bool, cache_bytes: u64) -> Result<LogFiles, DiskError> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes)
            .max_journaling_size(LOG_JOURNAL_BYTES)
            // Writes reach the kernel with the barrier, in one write.
            .manual_journal_persist(true)
            .open()?;
        let options =
            || fjall::KeyspaceCreateOptions::default().max_memtable_size(LOG_MEMTABLE_BYTES);
        let log = db.keyspace(Space::Log.name(), options)?;
        let meta = db.keyspace(Space::Meta.name(), options)?;
        let persist = if sync {
            fjall::PersistMode::SyncData
        } else {
            fjall::PersistMode::Buffer
        };
        Ok(LogFiles {
            db,
            log,
            meta,
            persist,
        })
    }

    fn keyspace(&self, space: Space) -> &fjall::Keyspace {
        if space == Space::Log {
            &self.log
        } else {
            &self.meta
        }
    }
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

/// Runs `work`, named `what`, on a blocking thread, off the async workers.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DiskError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DiskError::Worker {
            what,
            detail: e.to_string(),
        })
}

impl FileDisk {
    /// Opens (or creates) the node's stores in `dir`: sled in `dir` itself,
    /// the raft log in `dir/raft-log`. Each holds an exclusive lock on its
    /// files until every handle is dropped. sled's own periodic flush is
    /// off: every write that must be durable is flushed explicitly (the
    /// log's group commit, the vote, snapshots), and a timer flush in
    /// between only competes with those for the disk.
    ///
    /// A data directory written before the log moved out of sled has its
    /// log and vote in sled: they are copied into the new store in one
    /// atomic, synced batch, which also marks the store as the log's one
    /// source of truth, and only then removed from sled.
    pub fn open(dir: &Path) -> Result<FileDisk, DiskError> {
        FileDisk::open_with(dir, true, DEFAULT_CACHE_BYTES)
    }

    /// [`FileDisk::open`] with `cache_bytes` of cache: sled's page cache,
    /// and a quarter of it again for the log's block cache; `sync` false leaves durability to what
    /// the kernel holds (survives a process crash, not a power loss): only
    /// for measuring what the syncs cost.
    pub fn open_with(dir: &Path, sync: bool, cache_bytes: u64) -> Result<FileDisk, DiskError> {
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
        // The log is read back only by followers that fall behind: a
        // quarter of the cache is plenty.
        let log = LogFiles::open(&dir.join(LOG_DIR), sync, cache_bytes / 4)?;
        let disk = FileDisk {
            log: Arc::new(log),
            db,
            trees,
            flushes: Arc::default(),
            files,
            state: Arc::default(),
        };
        disk.move_log_out_of_sled()?;
        Ok(disk)
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        &self.trees[space as usize]
    }

    /// Makes the log store the one source of truth for the log: copies
    /// what sled holds of the log spaces (nothing, for a new directory) and
    /// the mark in one batch, syncs it, then empties sled's log spaces.
    fn move_log_out_of_sled(&self) -> Result<(), DiskError> {
        let log = &self.log;
        if log.meta.get(LOG_STORE_MARK)?.is_none() {
            let mut batch = log.db.batch();
            let mut moved = 0usize;
            for space in [Space::Log, Space::Meta] {
                for item in self.tree(space).iter() {
                    let (k, v) = item?;
                    batch.insert(log.keyspace(space), k.to_vec(), v.to_vec());
                    moved += 1;
                }
            }
            batch.insert(&log.meta, LOG_STORE_MARK, b"fjall".to_vec());
            batch.commit()?;
            log.db.persist(fjall::PersistMode::SyncAll)?;
            if moved > 0 {
                tracing::info!(records = moved, "moved the raft log and vote out of sled");
            }
        }
        // Only once the new store holds them durably: sled lets them go
        // (again, if a crash interrupted this before).
        let mut cleared = false;
        for space in [Space::Log, Space::Meta] {
            let tree = self.tree(space);
            if !tree.is_empty() {
                tree.clear()?;
                cleared = true;
            }
        }
        if cleared {
            self.db.flush()?;
            if let Some(files) = &self.files {
                files.sync()?;
            }
        }
        Ok(())
    }

    async fn flush_state(&self) -> Result<(), DiskError> {
        self.state.dirty.store(false, Ordering::Relaxed);
        self.db.flush_async().await?;
        if let Some(files) = self.files.clone() {
            blocking("sled's files", move || files.sync()).await??;
        }
        Ok(())
    }

    /// Starts a background flush of the state spaces when they were
    /// written to, none runs, and the last began [`STATE_FLUSH_EVERY`] ago.
    fn kick_state_flush(&self) {
        let s = &self.state;
        if !s.dirty.load(Ordering::Relaxed) {
            return;
        }
        let now = tokio::time::Instant::now();
        {
            let mut last = s.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|l| now.duration_since(l) < STATE_FLUSH_EVERY) {
                return;
            }
            if s.running.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(now);
        }
        let disk = self.clone();
        tokio::spawn(async move {
            if let Err(e) = disk.flush_state().await {
                // The next snapshot's flush meets the same error and
                // reports it to openraft; here it is only logged.
                tracing::error!(error = %e, "background flush of the state store failed");
            }
            disk.state.running.store(false, Ordering::Release);
        });
    }

    fn state_written(&self) {
        self.state.dirty.store(true, Ordering::Relaxed);
    }
}

impl Disk for FileDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        if space.is_log() {
            return Ok(self.log.keyspace(space).get(key)?.map(|v| v.to_vec()));
        }
        Ok(self.tree(space).get(key)?.map(|v| v.to_vec()))
    }

    fn put(&self, space: Space, records: Vec<Record>) -> Result<(), DiskError> {
        if space.is_log() {
            let keyspace = self.log.keyspace(space);
            let mut batch = self.log.db.batch();
            for (k, v) in records {
                batch.insert(keyspace, k, v);
            }
            return Ok(batch.commit()?);
        }
        let mut batch = sled::Batch::default();
        for (k, v) in records {
            batch.insert(k, v);
        }
        self.state_written();
        Ok(self.tree(space).apply_batch(batch)?)
    }

    fn remove_range(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<(), DiskError> {
        if space.is_log() {
            let keyspace = self.log.keyspace(space);
            let mut batch = self.log.db.batch();
            for item in keyspace.range::<Vec<u8>, _>((Bound::Included(from.to_vec()), upper(to))) {
                batch.remove(keyspace, item.key()?);
            }
            return Ok(batch.commit()?);
        }
        let tree = self.tree(space);
        let mut batch = sled::Batch::default();
        for item in tree.range::<Vec<u8>, _>((Bound::Included(from.to_vec()), upper(to))) {
            batch.remove(item?.0);
        }
        self.state_written();
        Ok(tree.apply_batch(batch)?)
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Record>, DiskError> {
        let range = (Bound::Included(from.to_vec()), upper(to));
        if space.is_log() {
            return self
                .log
                .keyspace(space)
                .range::<Vec<u8>, _>(range)
                .map(fjall_record)
                .collect();
        }
        self.tree(space)
            .range::<Vec<u8>, _>(range)
            .map(sled_record)
            .collect()
    }

    fn scan_limit(
        &self,
        space: Space,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, DiskError> {
        let range = (Bound::Included(from.to_vec()), Bound::Unbounded);
        if space.is_log() {
            return self
                .log
                .keyspace(space)
                .range::<Vec<u8>, _>(range)
                .take(limit)
                .map(fjall_record)
                .collect();
        }
        self.tree(space)
            .range::<Vec<u8>, _>(range)
            .take(limit)
            .map(sled_record)
            .collect()
    }

    fn last(&self, space: Space) -> Result<Option<Record>, DiskError> {
        if space.is_log() {
            return self
                .log
                .keyspace(space)
                .last_key_value()
                .map(fjall_record)
                .transpose();
        }
        Ok(self
            .tree(space)
            .last()?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    async fn flush_log(&self) -> Result<(), DiskError> {
        let start = tokio::time::Instant::now();
        let log = self.log.clone();
        blocking("the raft log's journal", move || {
            log.db.persist(log.persist)
        })
        .await??;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.kick_state_flush();
        metrics::histogram!("tenure_log_flush_duration_seconds")
            .record(start.elapsed().as_secs_f64());
        metrics::counter!("tenure_log_flushes_total").increment(1);
        Ok(())
    }

    async fn flush(&self) -> Result<(), DiskError> {
        self.flush_state().await?;
        self.flush_log().await
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    async fn off_thread<R, F>(&self, what: &'static str, work: F) -> Result<R, DiskError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        blocking(what, work).await
    }
}

fn fjall_record(guard: fjall::Guard) -> Result<Record, DiskError> {
    let (k, v) = guard.into_inner()?;
    Ok((k.to_vec(), v.to_vec()))
}

fn sled_record(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Record, DiskError> {
    let (k, v) = item?;
    Ok((k.to_vec(), v.to_vec()))
}

type Records = BTreeMap<Vec<u8>, Vec<u8>>;

enum Write {
    Put(Space, Vec<Record>),
    Remove(Space, Vec<u8>, Option<Vec<u8>>),
}

impl Write {
    fn space(&self) -> Space {
        match self {
            Write::Put(space, _) | Write::Remove(space, _, _) => *space,
        }
    }
}

#[derive(Default)]
struct SimState {
    /// What the process sees: every write, flushed or not.
    visible: [Records; SPACES],
    /// What survives a crash.
    durable: [Records; SPACES],
    /// Writes no barrier has covered yet, in order.
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

    /// A crash: every write no barrier covered is gone (a write to a log
    /// space is covered by the next `flush_log` or `flush`, any other by the
    /// next `flush`).
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

    async fn flush_log(&self) -> Result<(), DiskError> {
        self.with(|s| {
            let (log, rest): (Vec<Write>, Vec<Write>) = std::mem::take(&mut s.pending)
                .into_iter()
                .partition(|w| w.space().is_log());
            for write in &log {
                apply(&mut s.durable, write);
            }
            s.pending = rest;
            s.flushes += 1;
        });
        Ok(())
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

    #[test]
    fn a_log_flush_covers_the_log_spaces_and_leaves_the_state_spaces_to_a_full_flush() {
        let disk = SimDisk::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        disk.put(Space::Audit, vec![(vec![1], vec![1])]).unwrap();
        disk.put(Space::Log, vec![(vec![1], vec![1])]).unwrap();
        disk.put(Space::Meta, vec![(vec![1], vec![1])]).unwrap();
        rt.block_on(disk.flush_log()).unwrap();
        disk.put(Space::Snapshot, vec![(vec![1], vec![1])]).unwrap();
        disk.crash();
        for (space, kept) in [
            (Space::Log, 1),
            (Space::Meta, 1),
            (Space::Audit, 0),
            (Space::Snapshot, 0),
        ] {
            assert_eq!(
                disk.scan(space, &[], None).unwrap().len(),
                kept,
                "{space:?}"
            );
        }
        disk.put(Space::Audit, vec![(vec![2], vec![2])]).unwrap();
        rt.block_on(disk.flush()).unwrap();
        disk.crash();
        assert_eq!(disk.scan(Space::Audit, &[], None).unwrap().len(), 1);
    }
}
