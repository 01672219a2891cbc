//! The recent audit stream, kept for `Watch` callers that resume from a
//! sequence number. Every node keeps it (followers apply the same entries),
//! so any node can serve a watch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tenure_core::AuditEvent;
use tenure_raft::TableReader;
use tokio::sync::broadcast;

/// How many recent events a node keeps for resuming watchers.
pub const HISTORY: usize = 65_536;

/// The last [`HISTORY`] audit events this node applied.
#[derive(Clone, Default)]
pub struct History {
    events: Arc<Mutex<VecDeque<AuditEvent>>>,
}

impl History {
    /// Follows the table's notices for as long as the node runs.
    pub async fn run(self, table: TableReader) {
        let mut notices = table.subscribe();
        loop {
            match notices.recv().await {
                Ok(n) => {
                    let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
                    for e in &n.events {
                        if events.len() == HISTORY {
                            events.pop_front();
                        }
                        events.push_back(e.clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // A gap: resuming watchers will be told (gap_before).
                    tracing::warn!(missed, "the watch history missed events");
                    self.events
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// When a lease was granted (the proposer's wall clock, Unix ms), while
    /// its grant is among the retained events.
    pub fn granted_at(&self, id: tenure_core::LeaseId) -> Option<u64> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events
            .iter()
            .rev()
            .find(|e| e.kind == tenure_core::AuditKind::LeaseAcquire && e.lease_id == Some(id))
            .map(|e| e.at_ms)
    }

    /// Where a watch from `from` starts, with `current` the latest audit
    /// sequence number applied: the retained events to replay (sequence at
    /// least `from`), and whether some events at or after `from` are no
    /// longer retained. `from` 0 means "from now on": nothing to replay. A
    /// `from` above `current` replays nothing and misses nothing: the watch
    /// waits for it.
    pub fn since(&self, from: u64, current: u64) -> (Vec<AuditEvent>, bool) {
        if from == 0 {
            return (Vec::new(), false);
        }
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: Vec<AuditEvent> = events.iter().filter(|e| e.seq >= from).cloned().collect();
        // The oldest sequence number still here; with nothing retained (a
        // restart, say), the next one to come.
        let first = events.front().map_or(current.saturating_add(1), |e| e.seq);
        (kept, from <= current && from < first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> AuditEvent {
        AuditEvent {
            seq,
            index: seq,
            at_ms: 0,
            kind: tenure_core::AuditKind::LeaseAcquire,
            tenant: "t".into(),
            key: "k".into(),
            lease_id: None,
            owner: None,
            token: seq,
            actor: "a".into(),
            detail: None,
        }
    }

    fn kept(seqs: std::ops::RangeInclusive<u64>) -> History {
        let h = History::default();
        h.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(seqs.map(event));
        h
    }

    #[test]
    fn tn_watch_001_from_zero_replays_nothing_and_a_start_ahead_misses_nothing() {
        let h = kept(1..=5);
        assert_eq!(h.since(0, 5), (Vec::new(), false));
        let (past, gap) = h.since(7, 5);
        assert!(past.is_empty() && !gap, "a start above now waits, no gap");
        let (past, gap) = h.since(3, 5);
        assert_eq!(past.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(!gap);
    }

    #[test]
    fn tn_watch_001_a_start_older_than_what_is_kept_is_a_gap_even_with_nothing_kept() {
        // Events 10..=12 kept: from 4, the ones before 10 are gone.
        let h = kept(10..=12);
        let (past, gap) = h.since(4, 12);
        assert_eq!(past.len(), 3);
        assert!(gap);
        // Nothing kept at all (a restart): any start at or below now is a gap.
        let empty = History::default();
        assert_eq!(empty.since(1, 12), (Vec::new(), true));
        assert_eq!(empty.since(12, 12), (Vec::new(), true));
        assert_eq!(empty.since(13, 12), (Vec::new(), false));
    }
}
