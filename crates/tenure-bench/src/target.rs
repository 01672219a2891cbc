//! What a benchmarked system must do: the [`Target`] trait, the error an
//! operation ends with, and the simulated downstream store of the fenced
//! workload.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tenure_client::Mode;

/// Why one operation failed, after the client's own retries: a stable name
/// (Tenure's reason string, or etcd's gRPC code) that the report counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// The name errors are counted under.
    pub reason: String,
}

impl OpError {
    /// An error counted under `reason`.
    pub fn new(reason: impl Into<String>) -> OpError {
        OpError {
            reason: reason.into(),
        }
    }
}

/// The reason the downstream store refuses a write whose token is older
/// than one it has already accepted for the key.
pub const STALE_TOKEN: &str = "STALE_TOKEN";

/// The downstream store of the fenced workload: it accepts a write to a
/// key only with a token at least as large as every token it has accepted
/// for that key, the check a real store does with a conditional write.
#[derive(Debug, Default)]
pub struct Downstream {
    highest: Mutex<HashMap<String, u64>>,
}

impl Downstream {
    /// Writes to `key` under fencing `token`; refuses a stale token.
    pub fn write(&self, key: &str, token: u64) -> Result<(), OpError> {
        let mut highest = self.highest.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = highest.entry(key.to_owned()).or_insert(0);
        if token < *seen {
            return Err(OpError::new(STALE_TOKEN));
        }
        *seen = token;
        Ok(())
    }
}

/// A lock service the load generator can drive. One `Conn` per simulated
/// client: each has its own connections, as separate processes would.
pub trait Target: Send + Sync + 'static {
    /// One client's connections and state.
    type Conn: Send + 'static;

    /// The system's name in reports ("tenure", "etcd").
    fn system(&self) -> &'static str;

    /// Opens client number `client`'s connections.
    fn connect(&self, client: u32) -> impl Future<Output = Result<Self::Conn, OpError>> + Send;

    /// Takes the lock on `key` with a lease of `ttl`, writes to
    /// `downstream` under its fencing token when given, and releases it.
    /// With `wait`, the acquire waits up to that long for a held lock.
    fn lock_cycle(
        conn: &mut Self::Conn,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
        downstream: Option<&Downstream>,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Whether the system has shared locks and semaphores
    /// ([`Target::lock_cycle_in`]).
    fn has_modes(&self) -> bool {
        false
    }

    /// Takes `key` in `mode`, waiting up to `wait` for its turn, and
    /// releases it. Only systems whose [`Target::has_modes`] is true
    /// implement it; the others answer UNSUPPORTED.
    fn lock_cycle_in(
        conn: &mut Self::Conn,
        key: &str,
        ttl: Duration,
        wait: Duration,
        mode: Mode,
    ) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = (conn, key, ttl, wait, mode);
        std::future::ready(Err(OpError::new("UNSUPPORTED")))
    }

    /// A linearizable read of `key`'s lock.
    fn get(conn: &mut Self::Conn, key: &str) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Takes one lease per key in `keys` (setup, not measured).
    fn hold(
        conn: &mut Self::Conn,
        keys: &[String],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Renews every lease this client holds once, through the system's
    /// keep-alive stream; answers how many are still alive.
    fn keep_alive_round(conn: &mut Self::Conn)
    -> impl Future<Output = Result<u64, OpError>> + Send;

    /// Gives up every lease this client holds (cleanup, not measured).
    fn release_all(conn: &mut Self::Conn) -> impl Future<Output = ()> + Send;

    /// Refusals this client retried so far (a leader change, a node down).
    fn retries(conn: &Self::Conn) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_downstream_store_refuses_an_older_token_and_accepts_a_repeat() {
        let store = Downstream::default();
        assert_eq!(store.write("k", 3), Ok(()));
        assert_eq!(store.write("k", 3), Ok(()));
        assert_eq!(store.write("k", 2), Err(OpError::new(STALE_TOKEN)));
        assert_eq!(store.write("other", 1), Ok(()));
        assert_eq!(store.write("k", 4), Ok(()));
    }
}
