//! Quorum reads, batched: one leadership confirmation for every read that
//! is waiting.
//!
//! A linearizable read needs a quorum round (read-index) that *starts after
//! the read arrived*: then no leader elected before the read can have
//! committed anything this node has not applied. [`QuorumReads`] runs one
//! round at a time; every read that arrives while a round is under way
//! waits for the next round, which answers all of them at once. Under load
//! that is one heartbeat round for many reads instead of one each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::types::{NodeId, Raft};

/// Why a read could not be confirmed.
pub type ReadError = RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>;

type Waiter = oneshot::Sender<Result<(), ReadError>>;

/// Batches read-index rounds; cheap to clone.
#[derive(Clone, Debug)]
pub struct QuorumReads {
    queue: mpsc::UnboundedSender<Waiter>,
    rounds: Arc<AtomicU64>,
}

impl QuorumReads {
    /// Quorum reads through `raft`, on the current tokio runtime until the
    /// last clone is dropped.
    pub fn new(raft: Raft) -> QuorumReads {
        let (queue, waiting) = mpsc::unbounded_channel();
        let rounds = Arc::new(AtomicU64::new(0));
        tokio::spawn(confirm_in_rounds(raft, waiting, rounds.clone()));
        QuorumReads { queue, rounds }
    }

    /// Waits until a quorum confirmed, in a round that began after this
    /// call, that this node leads, and until it applied what was committed
    /// then.
    pub async fn confirm(&self) -> Result<(), ReadError> {
        let (waiter, answer) = oneshot::channel();
        let stopped = || RaftError::Fatal(Fatal::Stopped);
        self.queue.send(waiter).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Rounds run so far (each answers every read waiting when it began).
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

async fn confirm_in_rounds(
    raft: Raft,
    mut waiting: mpsc::UnboundedReceiver<Waiter>,
    rounds: Arc<AtomicU64>,
) {
    let mut group = Vec::new();
    while waiting.recv_many(&mut group, usize::MAX).await > 0 {
        // Everything in `group` arrived before this round starts.
        let confirmed = raft.ensure_linearizable().await.map(|_| ());
        rounds.fetch_add(1, Ordering::Relaxed);
        for waiter in group.drain(..) {
            let _ = waiter.send(confirmed.clone());
        }
    }
}
