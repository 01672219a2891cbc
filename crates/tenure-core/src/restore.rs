//! Restoring a backup (`tenure-backup/1`) through the log, and the
//! cluster's name.
//!
//! A restore is a short transaction of commands:
//!
//! 1. [`RestoreBegin`] names the backup (its SHA-256), the attempt, the
//!    proposer's term, `merge` and the token gap. A backup restored before
//!    answers "already restored at index N" and changes nothing.
//! 2. [`RestoreChunk`]s carry the backup's bytes, whole lines, in order.
//!    Each commits atomically into a staging area that clients never see.
//! 3. [`RestoreCommit`] reads the staged bytes as a backup (checksum,
//!    order, digest: the same reader as `tenure check backup`), and puts
//!    the table it holds in place in one apply. [`RestoreAbort`] drops the
//!    staging area instead.
//!
//! Only one attempt stages at a time. Another attempt is refused while the
//! first one's proposer may still be writing; one from a later term takes
//! over, since an attempt whose leader lost office can never commit again.
//!
//! **Tokens never go back.** The backup is older than what downstream
//! stores may have seen: the old cluster went on granting after it. So a
//! commit raises the table's *token floor* to the highest token it knows
//! plus the gap, and every later grant, on any lock, old or new, gets a
//! token above the floor. The table's position (and with it new lease ids)
//! and its audit sequence jump by at least the gap as well, so no lease id
//! or event number the old cluster may have used after the backup is used
//! again. A restored holder keeps its token; its lock's next grant gets the
//! floor's next.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind};
use crate::backup::{self, Backup};
use crate::error::Error;
use crate::lease::{EndReason, LeaseState};
use crate::requests::RequestMemory;
use crate::table::{State, Table, Tenant};

/// The largest backup a restore stages (every replica holds the staged
/// bytes in memory until the commit).
pub const MAX_RESTORE_BYTES: u64 = 512 << 20;

/// The largest token gap a restore accepts: well below where a token could
/// overflow, far above any real gap.
pub const MAX_TOKEN_GAP: u64 = 1 << 40;

/// The gap `tenure cluster restore` uses unless told otherwise: a million
/// grants after the backup on any single lock.
pub const DEFAULT_TOKEN_GAP: u64 = 1 << 20;

/// What the table keeps beyond its v1 snapshot: the cluster's name, the
/// token floor, the restores it took and the one it is staging. Encoded
/// last in the state, so a v1 snapshot is a v2 one without it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extra {
    /// The cluster's name, fixed by its first `Name` (or a restore).
    pub(crate) cluster_id: String,
    /// Every grant's token is above this (0 until a restore).
    pub(crate) token_floor: u64,
    /// The backups restored, oldest first.
    pub(crate) restores: Vec<Restored>,
    /// The restore being staged.
    pub(crate) pending: Option<Pending>,
}

/// A backup the table restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The backup's SHA-256 (its trailer's).
    pub sha256: String,
    /// The table's position when the restore committed.
    pub index: u64,
    /// The token gap it applied.
    pub token_gap: u64,
    /// Whether it merged into locks the table held.
    pub merged: bool,
}

/// A restore being staged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) begin: RestoreBegin,
    /// The position of its `RestoreBegin`.
    pub(crate) started: u64,
    pub(crate) chunks: u32,
    pub(crate) data: Vec<u8>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("begin", &self.begin)
            .field("started", &self.started)
            .field("chunks", &self.chunks)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Names the cluster, once: a later `Name` changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    /// 1–64 characters of `[a-z0-9-]`.
    pub cluster_id: String,
}

/// Starts staging a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreBegin {
    /// The backup's SHA-256, as its trailer states it.
    pub sha256: String,
    /// The backup's cluster id (its header's).
    pub cluster_id: String,
    /// The attempt: a number the proposer chose, carried by every command
    /// of the restore.
    pub attempt: u64,
    /// The proposer's term: an attempt from a later term takes over.
    pub term: u64,
    /// Merge into the locks the table holds (otherwise it must hold none).
    pub merge: bool,
    /// How far above every known token the next grants start.
    pub token_gap: u64,
    /// The admin who restores, for the audit record.
    pub actor: String,
    /// The backup's size in bytes.
    pub total_bytes: u64,
}

/// The next bytes of the backup being staged: whole lines.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreChunk {
    /// The attempt.
    pub attempt: u64,
    /// 0, 1, 2, … in order.
    pub seq: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RestoreChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RestoreChunk(attempt {}, #{}, {} bytes)",
            self.attempt,
            self.seq,
            self.data.len()
        )
    }
}

/// Puts the staged backup in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreCommit {
    /// The attempt.
    pub attempt: u64,
}

/// Drops the staged backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreAbort {
    /// The attempt.
    pub attempt: u64,
}

/// What a restore did (or, for a backup restored before, where).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The backup was restored before: nothing changed.
    pub already: bool,
    /// The table's position when the restore committed.
    pub index: u64,
    /// The audit sequence after the restore event.
    pub audit_seq: u64,
    /// Every later grant's token is above this.
    pub token_floor: u64,
    /// The gap applied.
    pub token_gap: u64,
    /// Lock records restored (merged ones included).
    pub locks: u64,
    /// ACTIVE leases restored (their deadlines are armed in full).
    pub active: u64,
    /// WAITING leases dropped: their callers are gone.
    pub dropped_waiters: u64,
    /// Leases of the backup a merge left out (the table's lock won).
    pub skipped: u64,
    /// Remembered requests restored.
    pub requests: u64,
    /// Ended leases restored.
    pub ended: u64,
    /// Whether it merged.
    pub merged: bool,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

/// Checks a cluster id's alphabet and length.
pub fn check_cluster_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "cluster id {id:?}: 1-64 characters of [a-z0-9-]"
        )))
    }
}

impl Name {
    /// See [`crate::Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        check_cluster_id(&self.cluster_id)
    }
}

impl RestoreBegin {
    /// See [`crate::Command::check`].
    pub fn check(&self) -> Result<(), Error> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("sha256: 64 hex digits"));
        }
        if !self.cluster_id.is_empty() {
            check_cluster_id(&self.cluster_id)?;
        }
        if self.token_gap == 0 || self.token_gap > MAX_TOKEN_GAP {
            return Err(invalid(format!(
                "token_gap {}: from 1 to {MAX_TOKEN_GAP}",
                self.token_gap
            )));
        }
        if self.total_bytes > MAX_RESTORE_BYTES {
            return Err(invalid(format!(
                "the backup has {} bytes; a restore takes at most {MAX_RESTORE_BYTES}",
                self.total_bytes
            )));
        }
        crate::validate::actor(&self.actor)
    }
}

impl Table {
    /// The cluster's id ("" until named).
    pub fn cluster_id(&self) -> &str {
        &self.state.extra.cluster_id
    }

    /// Every grant's token is above this.
    pub fn token_floor(&self) -> u64 {
        self.state.extra.token_floor
    }

    /// The backups restored, oldest first.
    pub fn restores(&self) -> &[Restored] {
        &self.state.extra.restores
    }

    /// The SHA-256 and attempt of the restore being staged, if any.
    pub fn restore_pending(&self) -> Option<(&str, u64)> {
        self.state
            .extra
            .pending
            .as_ref()
            .map(|p| (p.begin.sha256.as_str(), p.begin.attempt))
    }

    /// Where a backup with this SHA-256 was restored, if it was.
    pub fn restored_at(&self, sha256: &str) -> Option<u64> {
        self.state
            .extra
            .restores
            .iter()
            .find(|r| r.sha256 == sha256)
            .map(|r| r.index)
    }

    pub(crate) fn name(&mut self, c: &Name) -> Result<crate::Reply, Error> {
        c.check()?;
        if self.state.extra.cluster_id.is_empty() {
            self.state.extra.cluster_id = c.cluster_id.clone();
        }
        Ok(crate::Reply::Named(self.state.extra.cluster_id.clone()))
    }

    fn already(&self, sha256: &str) -> Option<crate::Reply> {
        self.restored_at(sha256).map(|index| {
            crate::Reply::Restore(RestoreReport {
                already: true,
                index,
                audit_seq: self.state.audit_seq,
                token_floor: self.state.extra.token_floor,
                ..RestoreReport::default()
            })
        })
    }

    pub(crate) fn restore_begin(
        &mut self,
        index: u64,
        c: RestoreBegin,
    ) -> Result<crate::Reply, Error> {
        c.check()?;
        if let Some(done) = self.already(&c.sha256) {
            return Ok(done);
        }
        self.check_begin(&c)?;
        self.state.extra.pending = Some(Pending {
            begin: c,
            started: index,
            chunks: 0,
            data: Vec::new(),
        });
        Ok(crate::Reply::Unchanged)
    }

    /// The refusals of a `RestoreBegin` by the table as it is: another
    /// attempt staging (from the same or a later term), or a target that
    /// does not take the backup. A server checks these before proposing,
    /// so such a refusal changes nothing, not even the table's position.
    pub(crate) fn check_begin(&self, c: &RestoreBegin) -> Result<(), Error> {
        if self.restored_at(&c.sha256).is_some() {
            return Ok(());
        }
        if let Some(p) = &self.state.extra.pending
            && p.begin.attempt != c.attempt
            && p.begin.term >= c.term
        {
            return Err(invalid(format!(
                "another restore (backup {}, started at index {}) is in progress",
                short(&p.begin.sha256),
                p.started
            )));
        }
        self.check_target(c)
    }

    /// A restore needs an empty table, or `merge` and the same cluster.
    fn check_target(&self, c: &RestoreBegin) -> Result<(), Error> {
        let locks = self.state.locks.len();
        if locks == 0 {
            return Ok(());
        }
        let own = &self.state.extra.cluster_id;
        if !c.merge {
            return Err(invalid(format!(
                "the cluster already holds {locks} locks: restore into an empty cluster, or merge with --merge"
            )));
        }
        // A merge needs to know both are the same cluster.
        if own.is_empty() || c.cluster_id.is_empty() {
            return Err(invalid(format!(
                "a merge takes only a backup of the same cluster, and {} no cluster id",
                if own.is_empty() {
                    "this cluster has (yet)"
                } else {
                    "the backup carries"
                }
            )));
        }
        if *own != c.cluster_id {
            return Err(invalid(format!(
                "the backup is of cluster {}, this is cluster {own}: a merge takes only a backup of the same cluster",
                c.cluster_id
            )));
        }
        Ok(())
    }

    fn pending_of(&mut self, attempt: u64) -> Result<&mut Pending, Error> {
        match self.state.extra.pending.as_mut() {
            Some(p) if p.begin.attempt == attempt => Ok(p),
            Some(p) => Err(invalid(format!(
                "another restore (backup {}) is in progress",
                short(&p.begin.sha256)
            ))),
            None => Err(invalid("no restore is in progress")),
        }
    }

    pub(crate) fn restore_chunk(&mut self, c: RestoreChunk) -> Result<crate::Reply, Error> {
        let p = self.pending_of(c.attempt)?;
        if c.seq != p.chunks {
            return Err(invalid(format!(
                "restore chunk {} where {} comes next",
                c.seq, p.chunks
            )));
        }
        let total = p.data.len() as u64 + c.data.len() as u64;
        if total > p.begin.total_bytes {
            return Err(invalid(format!(
                "{total} bytes staged; the backup has {}",
                p.begin.total_bytes
            )));
        }
        p.data.extend_from_slice(&c.data);
        p.chunks += 1;
        Ok(crate::Reply::Unchanged)
    }

    pub(crate) fn restore_abort(&mut self, c: RestoreAbort) -> Result<crate::Reply, Error> {
        self.pending_of(c.attempt)?;
        self.state.extra.pending = None;
        Ok(crate::Reply::Unchanged)
    }

    /// Puts the staged backup in place; `index` is the commit's position.
    /// On success returns the report and the restore event (none when the
    /// backup turned out to be restored already), with the table's
    /// position and audit sequence moved on; a refusal changes nothing.
    pub(crate) fn restore_commit(
        &mut self,
        index: u64,
        at_ms: u64,
        c: RestoreCommit,
    ) -> Result<(crate::Reply, Option<AuditEvent>), Error> {
        self.pending_of(c.attempt)?;
        // Taken out rather than copied (it can be hundreds of MB); put back
        // on a refusal, which changes nothing.
        let Some(p) = self.state.extra.pending.take() else {
            return Err(invalid("no restore is in progress"));
        };
        let result = self.commit_staged(index, at_ms, &p);
        if result.is_err() {
            self.state.extra.pending = Some(p);
        }
        result
    }

    fn commit_staged(
        &mut self,
        index: u64,
        at_ms: u64,
        p: &Pending,
    ) -> Result<(crate::Reply, Option<AuditEvent>), Error> {
        let b = &p.begin;
        if p.data.len() as u64 != b.total_bytes {
            return Err(invalid(format!(
                "{} of the backup's {} bytes staged",
                p.data.len(),
                b.total_bytes
            )));
        }
        let backup = backup::read(&p.data[..]).map_err(|e| invalid(format!("backup: {e}")))?;
        if backup.sha256 != b.sha256 {
            return Err(invalid("the staged bytes are not the backup begun"));
        }
        if let Some(done) = self.already(&b.sha256) {
            return Ok((done, None));
        }
        self.check_target(b)?;
        let merge = !self.state.locks.is_empty();
        // The backup's position: a merge keeps this table's state, but the
        // backup's lease ids count up to its own last index, and no later
        // id of this table may meet one of them.
        let theirs_last = backup.table.state.last_index;
        let (mut state, mut report) = if merge {
            self.merged(backup)
        } else {
            restored(backup)
        };
        // Above everything either history used.
        let own = &self.state;
        let highest_token = own
            .locks
            .iter()
            .chain(state.locks.iter())
            .map(|l| l.last_token)
            .chain([own.extra.token_floor, state.extra.token_floor])
            .max()
            .unwrap_or(0);
        let base = index
            .max(state.last_index)
            .max(own.last_index)
            .max(theirs_last);
        let top = base
            .checked_add(b.token_gap)
            .ok_or_else(|| invalid("the token gap overflows the table's position"))?;
        let floor = highest_token + b.token_gap;
        let seq = own.audit_seq.max(state.audit_seq) + b.token_gap;
        // New lease ids and events count on from the top; restored
        // records keep their age.
        let shift = top - state.last_index.min(top);
        if !merge {
            state.requests = shift_requests(&state.requests, shift);
            for (i, _) in state.ended.iter_mut() {
                *i = i.saturating_add(shift).min(top);
            }
            // Waiters have no open call any more: they end, abandoned.
            for lock in &mut state.locks {
                for id in std::mem::take(&mut lock.queue) {
                    if let Some(l) = state.leases.get_mut(&id) {
                        l.state = LeaseState::Released;
                        l.ended = Some(EndReason::WaitAbandoned);
                        l.version = l.version.saturating_add(1);
                        state.ended.push_back((top, id));
                    }
                }
            }
        }
        state.config = if merge {
            own.config.clone()
        } else {
            state.config
        };
        state.index_offset = own.index_offset + (top - index);
        state.last_index = top;
        state.audit_seq = seq;
        state.extra.token_floor = floor;
        let mut restores = own.extra.restores.clone();
        for r in std::mem::take(&mut state.extra.restores) {
            if !restores.iter().any(|o| o.sha256 == r.sha256) {
                restores.push(r);
            }
        }
        restores.push(Restored {
            sha256: b.sha256.clone(),
            index: top,
            token_gap: b.token_gap,
            merged: merge,
        });
        state.extra.restores = restores;
        // A restore into an empty cluster makes it the backup's cluster
        // (so later backups of either merge into it); a merge keeps this
        // cluster's name, which the backup shares.
        state.extra.cluster_id =
            if b.cluster_id.is_empty() || (merge && !own.extra.cluster_id.is_empty()) {
                own.extra.cluster_id.clone()
            } else {
                b.cluster_id.clone()
            };
        state.extra.pending = None;
        report.index = top;
        report.audit_seq = seq + 1;
        report.token_floor = floor;
        report.token_gap = b.token_gap;
        report.merged = merge;
        let mut candidate = Table {
            state,
            key_buf: String::new(),
        };
        // Abandoned waiters count against the retention of ended leases.
        candidate.forget(top);
        candidate
            .verify()
            .map_err(|e| invalid(format!("the restored table would be inconsistent: {e}")))?;
        self.state = candidate.state;
        let event = self.restore_event(top, at_ms, b, &report);
        self.state.audit_seq = event.seq;
        Ok((crate::Reply::Restore(report), Some(event)))
    }

    fn restore_event(
        &self,
        index: u64,
        at_ms: u64,
        b: &RestoreBegin,
        r: &RestoreReport,
    ) -> AuditEvent {
        let empty: Arc<str> = Arc::from("");
        AuditEvent {
            seq: self.state.audit_seq + 1,
            index,
            at_ms,
            kind: AuditKind::Restore,
            tenant: empty.clone(),
            key: empty,
            lease_id: None,
            owner: None,
            token: self.state.extra.token_floor,
            actor: b.actor.as_str().into(),
            detail: Some(format!(
                "backup={} token_gap={} merged={} locks={} active={} dropped_waiters={} skipped={}",
                b.sha256, b.token_gap, r.merged, r.locks, r.active, r.dropped_waiters, r.skipped
            )),
            mode: crate::lease::Mode::Exclusive,
            holders: Vec::new(),
        }
    }

    /// The table merged with a backup: every lock of either; for a lock in
    /// both, the higher token, and the backup's holder only where the
    /// table's lock is idle (and the higher token where it has no holder:
    /// a holder's token stays its lock's last, under the floor), the
    /// backup's token is the higher and the
    /// holder's id is new here. Waiters, remembered requests and ended
    /// leases of the backup are left out.
    fn merged(&self, backup: Backup) -> (State, RestoreReport) {
        let mut state = self.state.clone();
        let theirs = backup.table.state;
        let mut report = RestoreReport::default();
        let mut names = vec![None; theirs.locks.len()];
        for t in theirs.tenants.values() {
            for (key, slot) in &t.locks {
                names[*slot as usize] = Some((t.name.clone(), key.clone()));
            }
        }
        for (slot, lock) in theirs.locks.iter().enumerate() {
            let Some((tenant, key)) = names[slot].clone() else {
                continue;
            };
            report.locks += 1;
            report.dropped_waiters += lock.queue.len() as u64;
            let holders: Vec<_> = lock
                .holders()
                .filter_map(|id| theirs.leases.get(&id))
                .filter(|l| !state.leases.contains_key(&l.id))
                .collect();
            let all_new = holders.len() == lock.holders().count();
            let t = state
                .tenants
                .entry(tenant.clone())
                .or_insert_with(|| Tenant {
                    name: tenant.clone(),
                    locks: Default::default(),
                });
            let (key, here) = match t.locks.get_key_value(&key) {
                Some((k, s)) => (k.clone(), *s),
                None => {
                    let here = state.locks.len() as u32;
                    t.locks.insert(key.clone(), here);
                    state.locks.push(crate::lease::Lock::default());
                    (key, here)
                }
            };
            let mine = &mut state.locks[here as usize];
            let idle = !mine.is_busy() && !mine.delayed;
            let take = idle && lock.last_token > mine.last_token && !holders.is_empty() && all_new;
            // A holder here keeps its token at or below the lock's last:
            // the floor puts the next grant above both histories.
            if mine.holders().next().is_none() {
                mine.last_token = mine.last_token.max(lock.last_token);
            }
            if take {
                mine.active = lock.active;
                mine.shared = lock.shared.clone();
                mine.limit = lock.limit;
                for h in holders {
                    let mut lease = h.clone();
                    lease.tenant = t.name.clone();
                    lease.key = key.clone();
                    lease.lock = here;
                    state.leases.insert(lease.id, lease);
                    report.active += 1;
                }
            } else {
                report.skipped += lock.holders().count() as u64;
            }
        }
        (state, report)
    }
}

/// The backup's table as it stands, to be put in place of an empty one.
fn restored(backup: Backup) -> (State, RestoreReport) {
    let state = backup.table.state;
    let mut report = RestoreReport {
        locks: state.locks.len() as u64,
        requests: state.requests.len() as u64,
        ended: state.ended.len() as u64,
        ..RestoreReport::default()
    };
    for l in state.leases.values() {
        match l.state {
            LeaseState::Active => report.active += 1,
            LeaseState::Waiting => report.dropped_waiters += 1,
            _ => {}
        }
    }
    (state, report)
}

fn shift_requests(memory: &RequestMemory, shift: u64) -> RequestMemory {
    let entries = memory
        .entries()
        .map(|(k, r)| {
            let mut r = r.clone();
            r.index = r.index.saturating_add(shift);
            (k.to_string(), r)
        })
        .collect();
    RequestMemory::from_entries(entries).unwrap_or_default()
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
