//! Backups as JSON lines an operator can read (`tenure-backup/1`).
//!
//! A backup is the whole replicated table, one record per line:
//!
//! 1. a header: the format, where and when it was taken (source node,
//!    leader term, applied index, audit sequence, export time), the table's
//!    digest, counts, and the table's limits and index bookkeeping;
//! 2. one `lock` line per lock record, in slot order: tenant, key, last
//!    token, lock-delay, holder and queue;
//! 3. one `lease` line per lease, in id order, with every field and the
//!    time its deadline had left on the leader when the backup was read;
//! 4. one `request` line per remembered request_id, oldest first;
//! 5. one `ended` line per terminal lease the table still remembers, in the
//!    order they ended;
//! 6. a trailer: the number of lines before it and the SHA-256 of their
//!    bytes (newlines included).
//!
//! [`read`] checks a backup line by line and rebuilds the table from it: a
//! damaged, truncated, reordered or foreign file is refused with the number
//! of the line at fault, and a file whose rebuilt table does not have the
//! header's digest is refused as a whole. Reading never panics, whatever
//! the bytes.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Read as _};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TableConfig;
use crate::lease::{EndReason, Lease, LeaseId, LeaseState, LeaseView, Lock, Mode};
use crate::requests::{Fingerprint, Op, Remembered, RequestMemory};
use crate::table::{State, Table, Tenant};

/// The format this build writes and reads.
pub const BACKUP_FORMAT: &str = "tenure-backup/1";

/// A line longer than this is refused (the longest real line, a lock with
/// a full queue of 1,024 waiters, is about 20 KiB).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Where and when a backup was taken: what the server knows and the table
/// does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The node that read the table (the leader).
    pub source_node: u64,
    /// Its term when it read it.
    pub leader_term: u64,
    /// The raft index the table had applied.
    pub applied_index: u64,
    /// The export time on that node's wall clock, RFC 3339.
    pub exported_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub exported_at_ms: u64,
}

/// How many records a backup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tenants.
    pub tenants: u64,
    /// Lock records.
    pub locks: u64,
    /// Leases (every state).
    pub leases: u64,
    /// ACTIVE leases.
    pub active: u64,
    /// WAITING leases.
    pub waiting: u64,
    /// Remembered request ids.
    pub requests: u64,
    /// Terminal leases remembered.
    pub ended: u64,
}

/// The first line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `header`.
    #[serde(rename = "type")]
    pub kind: String,
    /// [`BACKUP_FORMAT`].
    pub format: String,
    /// Where and when.
    #[serde(flatten)]
    pub source: Source,
    /// The table's audit sequence (its last event's number).
    pub audit_sequence: u64,
    /// SHA-256 of the table, as `tenure cluster status` shows it.
    pub table_digest: String,
    /// What follows.
    pub counts: Counts,
    /// The table's limits.
    pub config: TableConfig,
    /// The table's position in its history (lease ids count on from it).
    pub last_index: u64,
    /// What the table adds to raft indexes after an earlier import.
    pub index_offset: u64,
    /// The cluster's id ("" when it was never named).
    #[serde(default)]
    pub cluster_id: String,
    /// Every grant's token is above this (after a restore).
    #[serde(default)]
    pub token_floor: u64,
    /// The backups the table restored, oldest first.
    #[serde(default)]
    pub restores: Vec<crate::restore::Restored>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockLine {
    tenant: String,
    key: String,
    slot: u32,
    last_token: u64,
    lock_delay: bool,
    active: Option<String>,
    queue: Vec<String>,
    /// SHARED or semaphore holders (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared: Vec<String>,
    /// A semaphore's slots (absent: a read-write lock).
    #[serde(default, skip_serializing_if = "is_zero")]
    limit: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A lease's mode as a backup line spells it (`mode`, `limit`): absent
/// for EXCLUSIVE, so a table without other modes backs up as before.
fn mode_fields(mode: Mode) -> (Option<String>, u32) {
    match mode {
        Mode::Exclusive => (None, 0),
        m => (Some(m.as_str().to_owned()), m.limit()),
    }
}

/// The mode a line's `mode` and `limit` name, if they agree.
fn mode_of(mode: Option<&str>, limit: u32) -> Option<Mode> {
    match (mode, limit) {
        (None | Some("EXCLUSIVE"), 0) => Some(Mode::Exclusive),
        (Some("SHARED"), 0) => Some(Mode::Shared),
        (Some("SEMAPHORE"), n) if n > 0 => Some(Mode::Semaphore(n)),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseLine {
    lease_id: String,
    tenant: String,
    key: String,
    owner: String,
    state: String,
    ttl_ms: u64,
    fencing_token: u64,
    version: u64,
    wait_timeout_ms: u64,
    ended: Option<String>,
    /// What the leader's deadline had left when the backup was read; null
    /// when not ACTIVE (or no deadline was armed).
    remaining_ttl_ms: Option<u64>,
    /// SHARED or SEMAPHORE (absent: EXCLUSIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    /// A SEMAPHORE's slots (absent otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    limit: u32,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerLine {
    lease_id: String,
    tenant: String,
    key: String,
    owner: String,
    state: String,
    ttl_ms: u64,
    fencing_token: u64,
    version: u64,
    wait_timeout_ms: u64,
    ended: Option<String>,
    /// SHARED or SEMAPHORE (absent: EXCLUSIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    /// A SEMAPHORE's slots (absent otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    limit: u32,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestLine {
    tenant: String,
    owner: String,
    request_id: String,
    op: String,
    key: Option<String>,
    lease_id: String,
    ttl_ms: u64,
    index: u64,
    answer: Option<AnswerLine>,
    /// SHARED or SEMAPHORE (absent: EXCLUSIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    /// A SEMAPHORE's slots (absent otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    limit: u32,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndedLine {
    index: u64,
    lease_id: String,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerLine {
    lines: u64,
    sha256: String,
}

/// One line after the header, by its `type`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Lock(LockLine),
    Lease(LeaseLine),
    Request(RequestLine),
    Ended(EndedLine),
    Trailer(TrailerLine),
}

impl Line {
    /// Where the line may stand: records come in this order.
    fn rank(&self) -> u8 {
        match self {
            Line::Lock(_) => 1,
            Line::Lease(_) => 2,
            Line::Request(_) => 3,
            Line::Ended(_) => 4,
            Line::Trailer(_) => 5,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Line::Lock(_) => "lock",
            Line::Lease(_) => "lease",
            Line::Request(_) => "request",
            Line::Ended(_) => "ended",
            Line::Trailer(_) => "trailer",
        }
    }
}

fn state_name(s: LeaseState) -> &'static str {
    s.as_str()
}

fn state_of(s: &str) -> Option<LeaseState> {
    Some(match s {
        "WAITING" => LeaseState::Waiting,
        "ACTIVE" => LeaseState::Active,
        "RELEASED" => LeaseState::Released,
        "EXPIRED" => LeaseState::Expired,
        _ => return None,
    })
}

fn end_name(e: EndReason) -> &'static str {
    match e {
        EndReason::Released => "RELEASED",
        EndReason::Expired => "EXPIRED",
        EndReason::ForceReleased => "FORCE_RELEASED",
        EndReason::WaitTimedOut => "WAIT_TIMED_OUT",
        EndReason::WaitAbandoned => "WAIT_ABANDONED",
    }
}

fn end_of(s: &str) -> Option<EndReason> {
    Some(match s {
        "RELEASED" => EndReason::Released,
        "EXPIRED" => EndReason::Expired,
        "FORCE_RELEASED" => EndReason::ForceReleased,
        "WAIT_TIMED_OUT" => EndReason::WaitTimedOut,
        "WAIT_ABANDONED" => EndReason::WaitAbandoned,
        _ => return None,
    })
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Acquire => "ACQUIRE",
        Op::Renew => "RENEW",
        Op::Release => "RELEASE",
    }
}

fn op_of(s: &str) -> Option<Op> {
    Some(match s {
        "ACQUIRE" => Op::Acquire,
        "RENEW" => Op::Renew,
        "RELEASE" => Op::Release,
        _ => return None,
    })
}

fn answer_line(v: &LeaseView) -> AnswerLine {
    AnswerLine {
        lease_id: v.id.to_string(),
        tenant: v.tenant.to_string(),
        key: v.key.to_string(),
        owner: v.owner.to_string(),
        state: state_name(v.state).into(),
        ttl_ms: v.ttl_ms,
        fencing_token: v.token,
        version: v.version,
        wait_timeout_ms: v.wait_timeout_ms,
        ended: v.ended.map(|e| end_name(e).into()),
        mode: mode_fields(v.mode).0,
        limit: mode_fields(v.mode).1,
    }
}

/// The lines of a backup of `table`, each with its newline, header first
/// and trailer last. `remaining` tells the time an ACTIVE lease's deadline
/// has left (the leader's timers know it; the table does not). The lines
/// are made as they are taken, so a large table is never held twice as
/// text.
pub struct Lines<'a, R: Fn(LeaseId) -> Option<u64>> {
    table: &'a Table,
    remaining: R,
    header: Option<String>,
    stage: u8,
    index: usize,
    leases: std::collections::btree_map::Values<'a, LeaseId, Lease>,
    requests: Box<dyn Iterator<Item = (&'a Arc<str>, &'a Remembered)> + 'a>,
    sha: Sha256,
    count: u64,
    slots: Vec<(Arc<str>, Arc<str>)>,
}

impl Table {
    /// The header a backup of this table taken at `source` starts with.
    pub fn backup_header(&self, source: Source) -> Header {
        let stats = self.stats();
        let s = &self.state;
        Header {
            kind: "header".into(),
            format: BACKUP_FORMAT.into(),
            source,
            audit_sequence: s.audit_seq,
            table_digest: self.digest_hex(),
            counts: Counts {
                tenants: stats.tenants as u64,
                locks: stats.locks as u64,
                leases: s.leases.len() as u64,
                active: stats.active as u64,
                waiting: stats.waiting as u64,
                requests: stats.requests as u64,
                ended: stats.ended as u64,
            },
            config: s.config.clone(),
            last_index: s.last_index,
            index_offset: s.index_offset,
            cluster_id: s.extra.cluster_id.clone(),
            token_floor: s.extra.token_floor,
            restores: s.extra.restores.clone(),
        }
    }

    /// The lines of a backup of this table: see [`Lines`].
    pub fn backup_lines<R: Fn(LeaseId) -> Option<u64>>(
        &self,
        source: Source,
        remaining: R,
    ) -> Lines<'_, R> {
        let header = self.backup_header(source);
        // Every lock's names, by slot.
        let mut slots = vec![(Arc::<str>::from(""), Arc::<str>::from("")); self.state.locks.len()];
        for t in self.state.tenants.values() {
            for (key, slot) in &t.locks {
                if let Some(s) = slots.get_mut(*slot as usize) {
                    *s = (t.name.clone(), key.clone());
                }
            }
        }
        Lines {
            table: self,
            remaining,
            header: Some(to_line(&header)),
            stage: 0,
            index: 0,
            leases: self.state.leases.values(),
            requests: Box::new(self.state.requests.entries()),
            sha: Sha256::new(),
            count: 0,
            slots,
        }
    }
}

fn to_line<T: Serialize>(value: &T) -> String {
    let mut line =
        serde_json::to_string(value).expect("backup lines hold only strings and numbers");
    line.push('\n');
    line
}

impl<R: Fn(LeaseId) -> Option<u64>> Lines<'_, R> {
    fn record(&mut self) -> Option<Line> {
        let s = &self.table.state;
        loop {
            match self.stage {
                0 => {
                    if let Some(lock) = s.locks.get(self.index) {
                        let (tenant, key) = self.slots[self.index].clone();
                        let line = lock_line(&tenant, &key, self.index as u32, lock);
                        self.index += 1;
                        return Some(Line::Lock(line));
                    }
                    self.stage = 1;
                }
                1 => {
                    if let Some(l) = self.leases.next() {
                        let remaining = match l.state {
                            LeaseState::Active => (self.remaining)(l.id),
                            _ => None,
                        };
                        return Some(Line::Lease(LeaseLine {
                            lease_id: l.id.to_string(),
                            tenant: l.tenant.to_string(),
                            key: l.key.to_string(),
                            owner: l.owner.to_string(),
                            state: state_name(l.state).into(),
                            ttl_ms: l.ttl_ms,
                            fencing_token: l.token,
                            version: l.version,
                            wait_timeout_ms: l.wait_timeout_ms,
                            ended: l.ended.map(|e| end_name(e).into()),
                            remaining_ttl_ms: remaining,
                            mode: mode_fields(l.mode).0,
                            limit: mode_fields(l.mode).1,
                        }));
                    }
                    self.stage = 2;
                    self.index = 0;
                }
                2 => {
                    if let Some((key, r)) = self.requests.next() {
                        let mut parts = key.splitn(3, '\0');
                        let (tenant, owner, request_id) = (
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default(),
                        );
                        return Some(Line::Request(RequestLine {
                            tenant: tenant.into(),
                            owner: owner.into(),
                            request_id: request_id.into(),
                            op: op_name(r.fingerprint.op).into(),
                            key: r.fingerprint.key.as_ref().map(|k| k.to_string()),
                            lease_id: r.lease.to_string(),
                            ttl_ms: r.fingerprint.ttl_ms,
                            index: r.index,
                            answer: r.answer.as_deref().map(answer_line),
                            mode: mode_fields(r.fingerprint.mode).0,
                            limit: mode_fields(r.fingerprint.mode).1,
                        }));
                    }
                    self.stage = 3;
                }
                3 => {
                    if let Some((index, id)) = s.ended.get(self.index) {
                        self.index += 1;
                        return Some(Line::Ended(EndedLine {
                            index: *index,
                            lease_id: id.to_string(),
                        }));
                    }
                    self.stage = 4;
                }
                _ => return None,
            }
        }
    }
}

fn lock_line(tenant: &str, key: &str, slot: u32, lock: &Lock) -> LockLine {
    LockLine {
        tenant: tenant.into(),
        key: key.into(),
        slot,
        last_token: lock.last_token,
        lock_delay: lock.delayed,
        active: lock.active.map(|id| id.to_string()),
        queue: lock.queue.iter().map(ToString::to_string).collect(),
        shared: lock.shared.iter().map(ToString::to_string).collect(),
        limit: lock.limit,
    }
}

impl<R: Fn(LeaseId) -> Option<u64>> Iterator for Lines<'_, R> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let line = match self.header.take() {
            Some(h) => h,
            None => match self.record() {
                Some(r) => to_line(&r),
                None if self.stage == 4 => {
                    self.stage = 5;
                    let trailer = Line::Trailer(TrailerLine {
                        lines: self.count,
                        sha256: hex::encode(self.sha.clone().finalize()),
                    });
                    return Some(to_line(&trailer));
                }
                None => return None,
            },
        };
        self.sha.update(line.as_bytes());
        self.count += 1;
        Some(line)
    }
}

/// The line count and SHA-256 a trailer line states; `None` when `line`
/// is not a trailer.
pub fn trailer(line: &[u8]) -> Option<(u64, String)> {
    match serde_json::from_slice::<Line>(line).ok()? {
        Line::Trailer(t) => Some((t.lines, t.sha256)),
        _ => None,
    }
}

/// Why a backup was refused: the line at fault (1-based; 0 for the file as
/// a whole) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct BackupError {
    /// The line at fault; 0: the file as a whole.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

fn at(line: u64, message: impl Into<String>) -> BackupError {
    BackupError {
        line,
        message: message.into(),
    }
}

/// A backup read back: its header and the table it holds.
#[derive(Clone, Debug)]
pub struct Backup {
    /// The first line.
    pub header: Header,
    /// The table, rebuilt and checked: its digest is the header's.
    pub table: Table,
    /// Each ACTIVE lease's remaining TTL when the backup was read.
    pub remaining: BTreeMap<LeaseId, u64>,
    /// The SHA-256 of the lines before the trailer: the backup's identity.
    pub sha256: String,
}

fn lease_id(line: u64, field: &str, s: &str) -> Result<LeaseId, BackupError> {
    s.parse()
        .map_err(|e: String| at(line, format!("{field}: {e}")))
}

/// Reads a backup: every line parses, in order, the trailer counts and
/// hashes the lines before it, and the table rebuilt from them is
/// consistent and has the header's digest. The first fault refuses the
/// whole file, naming its line.
pub fn read(input: impl BufRead) -> Result<Backup, BackupError> {
    let mut input = input;
    let mut sha = Sha256::new();
    let mut n: u64 = 0;
    let mut buf = Vec::new();
    let mut header: Option<Header> = None;
    let mut rank = 0u8;
    let mut trailer: Option<(u64, TrailerLine)> = None;
    let mut state = State::default();
    let mut next_slot: usize = 0;
    let mut remaining = BTreeMap::new();
    let mut requests: Vec<(String, Remembered)> = Vec::new();
    loop {
        buf.clear();
        let read = std::io::Read::by_ref(&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| at(n + 1, format!("unreadable: {e}")))?;
        if read == 0 {
            break;
        }
        n += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(at(n, format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        if buf.last() != Some(&b'\n') {
            return Err(at(n, "the file ends inside a line (truncated?)"));
        }
        if trailer.is_some() {
            return Err(at(n, "a line after the trailer"));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| at(n, "not UTF-8"))?;
        if header.is_none() {
            let h: Header = serde_json::from_str(text).map_err(|e| {
                at(
                    n,
                    format!("not a {BACKUP_FORMAT} header (is this a Tenure backup?): {e}"),
                )
            })?;
            if h.kind != "header" {
                return Err(at(
                    n,
                    format!("the first line is a {:?}, not the header", h.kind),
                ));
            }
            if h.format != BACKUP_FORMAT {
                return Err(at(
                    n,
                    format!("format {:?}; this build reads {BACKUP_FORMAT}", h.format),
                ));
            }
            h.config
                .validate()
                .map_err(|e| at(n, format!("config: {e}")))?;
            sha.update(&buf);
            header = Some(h);
            continue;
        }
        let line: Line =
            serde_json::from_str(text).map_err(|e| at(n, format!("not a backup record: {e}")))?;
        if line.rank() < rank {
            return Err(at(
                n,
                format!("a {} line after the records that follow it", line.name()),
            ));
        }
        rank = line.rank();
        match line {
            Line::Trailer(t) => {
                trailer = Some((n, t));
                continue;
            }
            Line::Lock(l) => {
                if l.slot as usize != next_slot {
                    return Err(at(
                        n,
                        format!("lock slot {} where {next_slot} comes next", l.slot),
                    ));
                }
                next_slot += 1;
                crate::validate::tenant(&l.tenant).map_err(|e| at(n, e.to_string()))?;
                crate::validate::key(&l.key).map_err(|e| at(n, e.to_string()))?;
                let tenant = state
                    .tenants
                    .entry(l.tenant.as_str().into())
                    .or_insert_with(|| Tenant {
                        name: l.tenant.as_str().into(),
                        locks: BTreeMap::new(),
                    });
                let key: Arc<str> = l.key.as_str().into();
                if tenant.locks.insert(key, l.slot).is_some() {
                    return Err(at(n, format!("lock {}/{} twice", l.tenant, l.key)));
                }
                let active = match &l.active {
                    Some(id) => Some(lease_id(n, "active", id)?),
                    None => None,
                };
                let queue = l
                    .queue
                    .iter()
                    .map(|id| lease_id(n, "queue", id))
                    .collect::<Result<VecDeque<_>, _>>()?;
                let shared = l
                    .shared
                    .iter()
                    .map(|id| lease_id(n, "shared", id))
                    .collect::<Result<Vec<_>, _>>()?;
                state.locks.push(Lock {
                    active,
                    queue,
                    last_token: l.last_token,
                    delayed: l.lock_delay,
                    shared,
                    limit: l.limit,
                });
            }
            Line::Lease(l) => {
                let id = lease_id(n, "lease_id", &l.lease_id)?;
                let (tenant, key, slot) = state
                    .tenants
                    .get(l.tenant.as_str())
                    .and_then(|t| {
                        let (k, s) = t.locks.get_key_value(l.key.as_str())?;
                        Some((t.name.clone(), k.clone(), *s))
                    })
                    .ok_or_else(|| {
                        at(n, format!("no lock {}/{} for the lease", l.tenant, l.key))
                    })?;
                let lease_state =
                    state_of(&l.state).ok_or_else(|| at(n, format!("state {:?}", l.state)))?;
                let ended = match &l.ended {
                    Some(e) => Some(end_of(e).ok_or_else(|| at(n, format!("ended {e:?}")))?),
                    None => None,
                };
                crate::validate::owner(&l.owner).map_err(|e| at(n, e.to_string()))?;
                let lease = Lease {
                    id,
                    tenant,
                    key,
                    lock: slot,
                    owner: l.owner.as_str().into(),
                    ttl_ms: l.ttl_ms,
                    state: lease_state,
                    token: l.fencing_token,
                    version: l.version,
                    wait_timeout_ms: l.wait_timeout_ms,
                    ended,
                    mode: mode_of(l.mode.as_deref(), l.limit)
                        .ok_or_else(|| at(n, "mode and limit disagree"))?,
                };
                if let Some(last) = state.leases.keys().next_back()
                    && *last >= id
                {
                    return Err(at(n, "leases out of id order"));
                }
                if let Some(r) = l.remaining_ttl_ms {
                    remaining.insert(id, r);
                }
                state.leases.insert(id, lease);
            }
            Line::Request(r) => {
                let op = op_of(&r.op).ok_or_else(|| at(n, format!("op {:?}", r.op)))?;
                let lease = lease_id(n, "lease_id", &r.lease_id)?;
                let answer = match r.answer {
                    Some(a) => Some(Box::new(LeaseView {
                        id: lease_id(n, "answer.lease_id", &a.lease_id)?,
                        tenant: a.tenant.as_str().into(),
                        key: a.key.as_str().into(),
                        owner: a.owner.as_str().into(),
                        ttl_ms: a.ttl_ms,
                        state: state_of(&a.state)
                            .ok_or_else(|| at(n, format!("answer.state {:?}", a.state)))?,
                        token: a.fencing_token,
                        version: a.version,
                        wait_timeout_ms: a.wait_timeout_ms,
                        ended: match &a.ended {
                            Some(e) => Some(
                                end_of(e).ok_or_else(|| at(n, format!("answer.ended {e:?}")))?,
                            ),
                            None => None,
                        },
                        mode: mode_of(a.mode.as_deref(), a.limit)
                            .ok_or_else(|| at(n, "answer: mode and limit disagree"))?,
                    })),
                    None => None,
                };
                let fingerprint = Fingerprint {
                    op,
                    key: r.key.as_deref().map(Into::into),
                    lease: match op {
                        Op::Acquire => None,
                        Op::Renew | Op::Release => Some(lease),
                    },
                    ttl_ms: r.ttl_ms,
                    mode: mode_of(r.mode.as_deref(), r.limit)
                        .ok_or_else(|| at(n, "mode and limit disagree"))?,
                };
                for (field, value) in [
                    ("tenant", &r.tenant),
                    ("owner", &r.owner),
                    ("request_id", &r.request_id),
                ] {
                    if value.contains('\0') {
                        return Err(at(n, format!("{field} holds a NUL")));
                    }
                }
                let mut key = String::new();
                crate::requests::request_key(&mut key, &r.tenant, &r.owner, &r.request_id);
                requests.push((
                    key,
                    Remembered {
                        fingerprint,
                        lease,
                        index: r.index,
                        answer,
                    },
                ));
            }
            Line::Ended(e) => {
                let id = lease_id(n, "lease_id", &e.lease_id)?;
                state.ended.push_back((e.index, id));
            }
        }
        sha.update(&buf);
    }
    let header = header.ok_or_else(|| at(0, "empty: no header"))?;
    let (tn, trailer) = trailer.ok_or_else(|| at(n + 1, "no trailer: the file was cut short"))?;
    if trailer.lines != tn - 1 {
        return Err(at(
            tn,
            format!(
                "the trailer counts {} lines, the file has {}",
                trailer.lines,
                tn - 1
            ),
        ));
    }
    let sha256 = hex::encode(sha.finalize());
    if trailer.sha256 != sha256 {
        return Err(at(
            tn,
            "the checksum does not match the lines: the file was changed",
        ));
    }
    state.config = header.config.clone();
    state.audit_seq = header.audit_sequence;
    state.last_index = header.last_index;
    state.index_offset = header.index_offset;
    state.extra.cluster_id = header.cluster_id.clone();
    state.extra.token_floor = header.token_floor;
    state.extra.restores = header.restores.clone();
    state.requests = RequestMemory::from_entries(requests).map_err(|e| at(0, e))?;
    let table = Table {
        state,
        ..Table::default()
    };
    table
        .verify()
        .map_err(|e| at(0, format!("inconsistent table: {e}")))?;
    let digest = table.digest_hex();
    if digest != header.table_digest {
        return Err(at(
            0,
            format!(
                "the records make a table with digest {digest}, the header says {}",
                header.table_digest
            ),
        ));
    }
    Ok(Backup {
        header,
        table,
        remaining,
        sha256,
    })
}
