//! When a follower campaigns: a fresh random time in `[min, max)` after it
//! last heard a leader (the node passes the upper half of its configured
//! election window).
//!
//! openraft 0.9 checks its election timer only on a tick every 1.5
//! heartbeats, and draws each node's random timeout once, when the node
//! starts. With a 100 ms heartbeat a follower of a dead leader campaigned up
//! to 150 ms after its timeout was due, and two followers whose fixed
//! timeouts were close tended to campaign within the same tick, split the
//! vote and wait again. So openraft's timer elections are off, and
//! [`Elections::run`] campaigns instead: it watches the last time this node
//! heard a leader (an AppendEntries or snapshot it accepted, or a vote it
//! granted: [`Elections::heard`]), and triggers an election once a timeout
//! drawn afresh for every attempt has passed since. The draw uses openraft's
//! RNG ([`crate::runtime::ThreadRng`]), so a seeded simulation replays the
//! same elections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::{BasicNode, RaftMetrics, ServerState};
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::runtime::ThreadRng;
use crate::transport::{Connector, Control, control};
use crate::types::{NodeId, Raft};

#[derive(Debug)]
struct Inner {
    heard: Mutex<Instant>,
    enabled: AtomicBool,
    min: Duration,
    max: Duration,
    /// The highest term a candidate asked this node's vote for.
    seen_term: AtomicU64,
    /// Set when a campaign should not wait for the full timeout.
    hurry: Notify,
    hurried: AtomicBool,
    /// When it last heard a leader, if ever since it started (the timer
    /// above also restarts on its own).
    leader_at: Mutex<Option<Instant>>,
}

/// A node's election timer; cheap to clone.
#[derive(Clone, Debug)]
pub struct Elections(Arc<Inner>);

impl Elections {
    /// A timer that campaigns `min..max` after the leader was last heard.
    pub fn new(min: Duration, max: Duration) -> Elections {
        Elections(Arc::new(Inner {
            heard: Mutex::new(Instant::now()),
            enabled: AtomicBool::new(true),
            min,
            max: max.max(min + Duration::from_millis(1)),
            seen_term: AtomicU64::new(0),
            hurry: Notify::new(),
            hurried: AtomicBool::new(false),
            leader_at: Mutex::new(None),
        }))
    }

    /// This node refused its vote to a candidate of `term` whose log is
    /// behind its own. If this node
    /// has not heard a leader for `lease` either (so the refusal was for
    /// the candidate's shorter log, not for a live leader), it campaigns at
    /// once, and in a term above the candidate's: waiting out its own
    /// timeout would only let the candidate, which cannot win, try again.
    pub fn refused(&self, term: u64, lease: Duration) {
        self.0.seen_term.fetch_max(term, Ordering::Relaxed);
        if !self.heard_within(lease) {
            self.0.hurried.store(true, Ordering::Relaxed);
            self.0.hurry.notify_one();
        }
    }

    /// Whether this node heard a leader within `within`.
    pub fn heard_within(&self, within: Duration) -> bool {
        let at = *self
            .0
            .leader_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        at.is_some_and(|at| Instant::now().saturating_duration_since(at) < within)
    }

    /// A candidate asked for this node's vote in `term`.
    pub fn asked(&self, term: u64) {
        self.0.seen_term.fetch_max(term, Ordering::Relaxed);
    }

    /// This node heard a leader (or granted a vote): the timer starts over.
    pub fn heard(&self) {
        *self
            .0
            .leader_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.restart();
    }

    /// The timer starts over.
    fn restart(&self) {
        *self.0.heard.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last_heard(&self) -> Instant {
        *self.0.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pauses (false) or resumes (true) campaigning, for a leadership
    /// transfer that wants only its target to campaign.
    pub fn enable(&self, enabled: bool) {
        self.0.enabled.store(enabled, Ordering::Relaxed);
        self.restart();
    }

    fn draw(&self) -> Duration {
        let (min, max) = (self.0.min.as_micros(), self.0.max.as_micros());
        let micros = ThreadRng.gen_range(min..max);
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Campaigns whenever the leader has been silent for a drawn timeout
    /// and a majority of the voters agree that it is (a pre-vote);
    /// returns when raft stops. `patience` bounds the wait for the others'
    /// answers.
    pub async fn run<C: Connector>(self, raft: Raft, connector: C, patience: Duration) {
        loop {
            let timeout = self.draw();
            // Wait until the timeout has passed since the leader was last
            // heard; every time it is heard again, the wait moves on. A
            // node that has heard no leader since it started waits one
            // `max` longer: the leader is least likely to reach it at once
            // (replication to a node that was down backs off for a while),
            // and it should not depose a live leader it has not heard yet.
            loop {
                let heard_once = self
                    .0
                    .leader_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some();
                let late = if heard_once {
                    Duration::ZERO
                } else {
                    self.0.max
                };
                let due = self.last_heard() + timeout + late;
                if Instant::now() >= due || self.0.hurried.swap(false, Ordering::Relaxed) {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = self.0.hurry.notified() => {}
                }
            }
            let m = raft.metrics().borrow().clone();
            if m.running_state.is_err() {
                return;
            }
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == m.id);
            let quiet = !self.0.enabled.load(Ordering::Relaxed);
            if m.state == ServerState::Leader || !voter || quiet {
                self.restart();
                continue;
            }
            if !pre_vote(&m, &connector, patience).await {
                tracing::debug!("a majority still hears a leader: not campaigning");
                self.restart();
                continue;
            }
            tracing::info!(
                silent_ms = Instant::now()
                    .saturating_duration_since(self.last_heard())
                    .as_millis() as u64,
                term = m.current_term,
                "no leader heard: campaigning"
            );
            // The next attempt draws afresh, counting from this one.
            self.restart();
            // openraft campaigns in the term after its own; a candidate
            // this node refused may already hold that term (a vote for
            // itself), so step past every term seen, one election each.
            let seen = self.0.seen_term.load(Ordering::Relaxed);
            let steps = seen.saturating_sub(m.current_term).min(8) + 1;
            for _ in 0..steps {
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Asks the other voters whether they still hear a leader, and answers
/// whether a majority of the voters (this node included) hears none. Only
/// an answer counts: a voter that cannot be reached does not agree. So a
/// node cut off from the others, or one that restarted and has not been
/// reached by the leader yet, does not campaign, and its higher term cannot
/// depose a leader the rest of the cluster still follows (etcd's pre-vote
/// does the same).
async fn pre_vote<C: Connector>(
    m: &RaftMetrics<NodeId, BasicNode>,
    connector: &C,
    patience: Duration,
) -> bool {
    let membership = m.membership_config.membership();
    let others: Vec<String> = membership
        .voter_ids()
        .filter(|v| *v != m.id)
        .filter_map(|v| membership.get_node(&v).map(|n| n.addr.clone()))
        .collect();
    let voters = others.len() + 1;
    // This node agrees with itself.
    let needed = voters / 2;
    if needed == 0 {
        return true;
    }
    let mut asks = tokio::task::JoinSet::new();
    for addr in &others {
        let (connector, addr) = (connector.clone(), addr.clone());
        asks.spawn(async move {
            tokio::time::timeout(patience, control(&connector, &addr, Control::Observe)).await
        });
    }
    let (mut agree, mut answered) = (0, 0);
    while let Some(answer) = asks.join_next().await {
        answered += 1;
        if let Ok(Ok(Ok(o))) = answer
            && o.leader.is_none_or(|l| l == m.id)
        {
            agree += 1;
            if agree >= needed {
                return true;
            }
        }
        if agree + (others.len() - answered) < needed {
            return false;
        }
    }
    false
}
