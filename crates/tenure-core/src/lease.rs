//! Leases and locks: the records the table keeps.
//!
//! A [`Lock`] exists per `(tenant, key)` once anyone asked for it and never
//! goes away, because it carries the last fencing token and tokens must never
//! restart. A [`Lease`] is one acquire by one owner on one lock; it lives
//! WAITING → ACTIVE → RELEASED | EXPIRED and, once terminal, is kept for a
//! bounded while so that late renewals and releases get the precise reason.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An opaque lease id, unique forever: the position, in the table's history,
/// of the Acquire command that created the lease (every applied command takes
/// the next position, so commands batched into one log entry take
/// consecutive ones; after an import, positions go on above the imported
/// history). Clients see it as 16 hex digits and must not parse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseId(u64);

impl LeaseId {
    /// The id of the lease created by the command applied at `index`.
    pub fn from_index(index: u64) -> LeaseId {
        LeaseId(index)
    }

    /// The position of the command that created the lease.
    pub fn index(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for LeaseId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16
            || !s
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!("lease id {s:?} is not 16 lowercase hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(LeaseId)
            .map_err(|e| format!("lease id {s:?}: {e}"))
    }
}

/// Where a lease is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseState {
    /// Queued behind the holder; its own TTL keeps its place.
    Waiting,
    /// Holds the lock.
    Active,
    /// Given up by its owner, an operator, or a withdrawn wait. Terminal.
    Released,
    /// Its TTL ran out (an `Expire` command applied). Terminal.
    Expired,
}

impl LeaseState {
    /// The name used in the API and the scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Waiting => "WAITING",
            LeaseState::Active => "ACTIVE",
            LeaseState::Released => "RELEASED",
            LeaseState::Expired => "EXPIRED",
        }
    }

    /// RELEASED and EXPIRED never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, LeaseState::Released | LeaseState::Expired)
    }
}

/// How a lease ended, for audit and for answering retries precisely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndReason {
    /// Its owner released it.
    Released,
    /// Its TTL ran out.
    Expired,
    /// An operator force-released the lock it held.
    ForceReleased,
    /// It was waiting and its wait timeout passed.
    WaitTimedOut,
    /// It was waiting and its caller went away.
    WaitAbandoned,
}

/// How a lease holds its lock.
///
/// A key is either a read-write lock, taken [`Mode::Exclusive`] (one holder,
/// the default) or [`Mode::Shared`] (any number of holders, no exclusive
/// holder meanwhile), or a counting semaphore of `limit` slots, taken
/// [`Mode::Semaphore`] (at most `limit` holders). Which one a key is stays
/// fixed while it has holders or waiters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// The only holder.
    #[default]
    Exclusive,
    /// One of any number of shared holders.
    Shared,
    /// One of at most `limit` holders of a semaphore.
    Semaphore(u32),
}

impl Mode {
    /// The name used in the API and the scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "EXCLUSIVE",
            Mode::Shared => "SHARED",
            Mode::Semaphore(_) => "SEMAPHORE",
        }
    }

    /// The semaphore's limit; 0 for the modes of a read-write lock.
    pub fn limit(self) -> u32 {
        match self {
            Mode::Semaphore(n) => n,
            Mode::Exclusive | Mode::Shared => 0,
        }
    }

    /// The mode named by the API's fields: `limit` > 0 is a semaphore of
    /// that many slots, whatever `shared` says; otherwise shared or not.
    pub fn from_parts(shared: bool, limit: u32) -> Mode {
        match (shared, limit) {
            (_, n) if n > 0 => Mode::Semaphore(n),
            (true, _) => Mode::Shared,
            (false, _) => Mode::Exclusive,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Semaphore(n) => write!(f, "SEMAPHORE({n})"),
            m => f.write_str(m.as_str()),
        }
    }
}

/// One acquire by one owner on one lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique forever; see [`LeaseId`].
    pub id: LeaseId,
    /// Leases never cross tenants; every lookup checks this.
    pub tenant: Arc<str>,
    /// The lock this lease holds or waits for.
    pub key: Arc<str>,
    /// The slot of that lock's record in the table.
    pub lock: u32,
    /// The principal that may renew and release it.
    pub owner: Arc<str>,
    /// Time to live; the leader turns it into a deadline on its own clock.
    pub ttl_ms: u64,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// The fencing token of its grant; 0 until granted.
    pub token: u64,
    /// Counts logged transitions, starting at 1.
    pub version: u64,
    /// How long the acquire was willing to wait; 0 for a non-waiting acquire.
    pub wait_timeout_ms: u64,
    /// Set once terminal.
    pub ended: Option<EndReason>,
    /// How it holds (or will hold) its lock.
    pub mode: Mode,
}

impl Lease {
    /// A read-only copy for replies.
    pub fn view(&self) -> LeaseView {
        LeaseView {
            id: self.id,
            tenant: self.tenant.clone(),
            key: self.key.clone(),
            owner: self.owner.clone(),
            ttl_ms: self.ttl_ms,
            state: self.state,
            token: self.token,
            version: self.version,
            wait_timeout_ms: self.wait_timeout_ms,
            ended: self.ended,
            mode: self.mode,
        }
    }
}

/// A lease as replies show it. Deadlines are not here: they live in the
/// leader's memory, and the server adds `expires_in_ms` at the edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The opaque id.
    pub id: LeaseId,
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its lock.
    pub key: Arc<str>,
    /// Its owner.
    pub owner: Arc<str>,
    /// Its TTL.
    pub ttl_ms: u64,
    /// Its state.
    pub state: LeaseState,
    /// Its fencing token, 0 while waiting.
    pub token: u64,
    /// Logged transitions so far.
    pub version: u64,
    /// The wait timeout it was acquired with.
    pub wait_timeout_ms: u64,
    /// How it ended, once terminal.
    pub ended: Option<EndReason>,
    /// How it holds (or will hold) its lock.
    pub mode: Mode,
}

/// The record of one `(tenant, key)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The EXCLUSIVE holder, if any.
    pub active: Option<LeaseId>,
    /// WAITING leases in arrival order, whatever their mode.
    pub queue: VecDeque<LeaseId>,
    /// The token of the latest grant; the next grant gets `last_token + 1`.
    pub last_token: u64,
    /// Set by an expiry while lock-delay is configured; cleared by a command.
    pub delayed: bool,
    /// The SHARED or semaphore holders, in grant order.
    pub shared: Vec<LeaseId>,
    /// 0: a read-write lock; N: a semaphore of N slots. Fixed while the lock
    /// has holders or waiters.
    pub limit: u32,
}

impl Lock {
    /// Whether the lock could be granted right now to an exclusive newcomer.
    pub fn is_free(&self) -> bool {
        self.admits(Mode::Exclusive)
    }

    /// Whether anyone holds or waits for the lock: while so, its kind (a
    /// read-write lock or a semaphore of `limit`) is fixed.
    pub fn is_busy(&self) -> bool {
        self.active.is_some() || !self.shared.is_empty() || !self.queue.is_empty()
    }

    /// Whether a request in `mode` suits the lock's kind. An idle lock suits
    /// every mode (it takes the kind of its next request).
    pub fn suits(&self, mode: Mode) -> bool {
        !self.is_busy() || self.limit == mode.limit()
    }

    /// Whether a grant in `mode` fits beside the current holders, whatever
    /// waits: the test for the head of the queue.
    pub fn fits(&self, mode: Mode) -> bool {
        if self.delayed || self.active.is_some() {
            return false;
        }
        match mode {
            Mode::Exclusive => self.shared.is_empty(),
            Mode::Shared => true,
            Mode::Semaphore(n) => self.shared.len() < n as usize,
        }
    }

    /// Whether a newcomer in `mode` is granted at once: it fits and nobody
    /// waits ahead of it (FIFO across modes, so a waiting writer holds back
    /// later readers).
    pub fn admits(&self, mode: Mode) -> bool {
        self.queue.is_empty() && self.suits(mode) && self.fits(mode)
    }

    /// Every holder, the exclusive one first, then the others in grant order.
    pub fn holders(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.active.into_iter().chain(self.shared.iter().copied())
    }
}

/// A lock as replies show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its key.
    pub key: Arc<str>,
    /// The first of its holders (the exclusive one, or the oldest shared or
    /// semaphore grant), if any.
    pub active: Option<LeaseView>,
    /// Every holder, `active` first.
    pub holders: Vec<LeaseView>,
    /// 0: a read-write lock; N: a semaphore of N slots.
    pub limit: u32,
    /// The token of the latest grant (0: never granted).
    pub last_token: u64,
    /// How many leases wait in its queue.
    pub waiters: u32,
    /// Whether it is inside a lock-delay.
    pub delayed: bool,
}
