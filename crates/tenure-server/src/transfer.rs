//! Handing leadership to another voter (openraft 0.9 has no call for it).
//!
//! A follower refuses to vote while its leader's lease runs (one election
//! timeout after the last heartbeat). So the leader: waits until the target
//! holds its whole log, turns off the election timers of every other voter
//! (and its own) so that only the target will campaign, stops its own
//! heartbeats, waits out the lease, and tells the target to campaign. Timers
//! and heartbeats are switched back on whatever happens.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;
use tenure_raft::{Connector, Control, NodeId, Raft, control};

/// Why a transfer did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// This node is not the leader.
    #[error("this node is not the leader")]
    NotLeader,
    /// The target is not a voter of the cluster.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    /// The target did not catch up, or did not win, in time.
    #[error("node {0} did not take over in time: {1}")]
    TimedOut(NodeId, String),
}

/// Hands leadership from this node (`me`) to `target`; returns the new
/// leader and its term. `lease` is the election timeout's upper bound.
pub async fn transfer<C: Connector>(
    raft: &Raft,
    me: NodeId,
    connector: &C,
    target: NodeId,
    lease: Duration,
) -> Result<(NodeId, u64), TransferError> {
    let m = raft.metrics().borrow().clone();
    if m.state != ServerState::Leader {
        return Err(TransferError::NotLeader);
    }
    if target == me {
        return Ok((me, m.current_term));
    }
    let voters: Vec<NodeId> = m.membership_config.voter_ids().collect();
    if !voters.contains(&target) {
        return Err(TransferError::NotAVoter(target));
    }
    let addrs: BTreeMap<NodeId, String> = m
        .membership_config
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let patience = lease * 5;

    // 1. The target holds everything the leader has.
    raft.wait(Some(patience))
        .metrics(
            |m| {
                let last = m.last_log_index;
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten())
                    .is_some_and(|matched| Some(matched.index) >= last)
            },
            "the target catches up",
        )
        .await
        .map_err(|e| TransferError::TimedOut(target, e.to_string()))?;

    // 2. Nobody but the target will campaign; the leader goes quiet.
    let quiet: Vec<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| *v != target && *v != me)
        .collect();
    for v in &quiet {
        if let Err(e) = control(connector, &addrs[v], Control::Elections(false)).await {
            tracing::warn!(node = v, error = %e, "could not pause an election timer");
        }
    }
    raft.runtime_config().heartbeat(false);

    // 3. After the lease, the target campaigns and wins.
    let outcome = async {
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
        control(connector, &addrs[&target], Control::Campaign)
            .await
            .map_err(|e| TransferError::TimedOut(target, e.to_string()))?;
        // Asked, not watched: a node that stopped serving never hears the
        // new leader, so the target itself says when it leads.
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Ok(o) = control(connector, &addrs[&target], Control::Observe).await
                && o.leader == Some(target)
            {
                return Ok((target, o.term));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TransferError::TimedOut(
                    target,
                    "it never reported leading".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    .await;

    // 4. Timers and heartbeats back on, whatever happened.
    raft.runtime_config().heartbeat(true);
    for v in &quiet {
        if let Err(e) = control(connector, &addrs[v], Control::Elections(true)).await {
            tracing::warn!(node = v, error = %e, "could not resume an election timer");
        }
    }
    if let Ok((leader, term)) = &outcome {
        tracing::info!(from = me, to = leader, term, "leadership transferred");
    }
    outcome
}

/// The voter (other than `me`) that holds the most of the log: the best
/// successor when the leader shuts down.
pub fn successor(raft: &Raft, me: NodeId) -> Option<NodeId> {
    let m = raft.metrics().borrow().clone();
    let voters: Vec<NodeId> = m
        .membership_config
        .voter_ids()
        .filter(|v| *v != me)
        .collect();
    let replication = m.replication.as_ref()?;
    voters
        .into_iter()
        .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))
}
