//! Many commands per log entry: the leader's proposals, batched.
//!
//! openraft 0.9 appends and flushes each `client_write` before it takes the
//! next, so one command per entry costs one fsync per command on the leader
//! and on a follower. The [`Proposer`] queues the commands of concurrent
//! callers and writes them as one [`Proposal`]: while a few entries are in
//! flight, the commands that arrive wait and leave together in the next
//! one. A lone caller still goes out at once; under load an entry carries up
//! to `max_batch` commands for the price of one.

use std::sync::Arc;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use tenure_core::{Applied, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::types::{LogId, NodeId, Proposal, Raft};

/// Why a proposal did not commit.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// A command that committed: the entry that carried it and its answer.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The log entry the command was part of.
    pub log_id: LogId,
    /// What the table answered.
    pub applied: Applied,
}

struct Pending {
    /// When the caller queued it.
    queued: tokio::time::Instant,
    at_ms: u64,
    command: Command,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// Batches commands into log entries; cheap to clone.
#[derive(Clone, Debug)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Commands per entry at most.
    pub const MAX_BATCH: usize = 512;
    /// Entries this node has proposed and not yet seen committed, at most.
    pub const IN_FLIGHT: usize = 2;

    /// A proposer for `raft`, running on the current tokio runtime until the
    /// last clone is dropped.
    pub fn new(raft: Raft) -> Proposer {
        Proposer::with_limits(raft, Proposer::MAX_BATCH, Proposer::IN_FLIGHT)
    }

    /// A proposer with explicit limits (both at least 1).
    pub fn with_limits(raft: Raft, max_batch: usize, in_flight: usize) -> Proposer {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(batch(raft, pending, max_batch.max(1), in_flight.max(1)));
        Proposer { queue }
    }

    /// Proposes `command` (stamped `at_ms`, the proposer's wall clock for
    /// the audit trail) and waits until it is committed and applied.
    pub async fn propose(&self, at_ms: u64, command: Command) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || RaftError::Fatal(Fatal::Stopped);
        self.queue
            .send(Pending {
                queued: tokio::time::Instant::now(),
                at_ms,
                command,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn batch(
    raft: Raft,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    max_batch: usize,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = pending.recv().await {
        // Wait for a slot first: what arrives meanwhile joins this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        // An import or a restore chunk is large: it travels alone.
        if !group[0].command.travels_alone() {
            while group.len() < max_batch {
                match pending.try_recv() {
                    Ok(p) if p.command.travels_alone() => {
                        write(raft.clone(), group).await;
                        group = vec![p];
                        break;
                    }
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            write(raft, group).await;
            drop(slot);
        });
    }
}

/// Writes `group` as one entry and answers each caller.
async fn write(raft: Raft, group: Vec<Pending>) {
    let at_ms = group.iter().map(|p| p.at_ms).max().unwrap_or(0);
    let start = tokio::time::Instant::now();
    for p in &group {
        metrics::histogram!("tenure_raft_queue_seconds")
            .record(start.saturating_duration_since(p.queued).as_secs_f64());
    }
    let (commands, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.command, p.reply)).unzip();
    tracing::trace!(commands = commands.len(), "proposing a batch");
    metrics::counter!("tenure_raft_proposals_total").increment(1);
    metrics::histogram!("tenure_raft_commands_per_entry").record(commands.len() as f64);
    let written = raft.client_write(Proposal { at_ms, commands }).await;
    // Append and flush here, replication, commit and apply.
    metrics::histogram!("tenure_raft_write_seconds").record(start.elapsed().as_secs_f64());
    match written {
        Ok(written) => {
            for (reply, applied) in replies.into_iter().zip(written.data) {
                let _ = reply.send(Ok(Committed {
                    log_id: written.log_id,
                    applied,
                }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
