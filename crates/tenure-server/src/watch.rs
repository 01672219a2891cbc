//! The audit history a node serves `Watch` callers from, and the recent
//! grants the HTTP gateway dates leases by.
//!
//! Every node keeps the events it applied on its disk (tenure-raft's
//! `audit` module: bounded by count and age, kept across restarts), so any
//! node can serve a watch that resumes from a sequence number, also after
//! it restarted. [`History::gap`] says whether a resume asks for events
//! that are no longer kept: the caller is then told (`gap_before`), never
//! left to miss them in silence.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tenure_core::AuditEvent;
use tenure_raft::{AuditHistory, DiskError, Notice, TableReader};
use tokio::sync::broadcast;

/// How many recent events a node keeps in memory to date grants.
pub const RECENT: usize = 65_536;

/// The kept audit history, and the last [`RECENT`] events in memory.
#[derive(Clone)]
pub struct History {
    recent: Arc<Mutex<Recent>>,
    kept: AuditHistory,
}

/// The recent events, and the notices not yet read into them.
#[derive(Default)]
struct Recent {
    events: VecDeque<AuditEvent>,
    notices: Option<broadcast::Receiver<Arc<Notice>>>,
}

impl Recent {
    /// Reads every notice already sent into the recent events.
    fn drain(&mut self) {
        let Some(notices) = self.notices.as_mut() else {
            return;
        };
        loop {
            match notices.try_recv() {
                Ok(n) => {
                    for e in &n.events {
                        if self.events.len() == RECENT {
                            self.events.pop_front();
                        }
                        self.events.push_back(e.clone());
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the recent grants missed events");
                    self.events.clear();
                }
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => {
                    return;
                }
            }
        }
    }
}

impl History {
    /// The history `kept` on disk.
    pub fn new(kept: AuditHistory) -> History {
        History {
            recent: Arc::default(),
            kept,
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the table's notices for as long as the node runs.
    pub async fn run(self, table: TableReader) {
        let mut wake = table.subscribe();
        self.recent().notices = Some(table.subscribe());
        loop {
            match wake.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.recent().drain(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// When a lease was granted (the proposer's wall clock, Unix ms), while
    /// its grant is among the recent events. The notices already sent are
    /// read first: an answer built right after the grant applied finds it.
    pub fn granted_at(&self, id: tenure_core::LeaseId) -> Option<u64> {
        let mut recent = self.recent();
        recent.drain();
        recent
            .events
            .iter()
            .rev()
            .find(|e| e.kind == tenure_core::AuditKind::LeaseAcquire && e.lease_id == Some(id))
            .map(|e| e.at_ms)
    }

    /// Whether a watch from `from`, with `current` the latest audit
    /// sequence applied, asks for events no longer kept. `from` 0 means
    /// "from now on", and a `from` above `current` waits for it: neither
    /// misses anything.
    pub fn gap(&self, from: u64, current: u64) -> Result<bool, DiskError> {
        if from == 0 || from > current {
            return Ok(false);
        }
        // With nothing kept (a snapshot just installed), everything up to
        // now is missing.
        Ok(self.kept.first()?.is_none_or(|first| from < first))
    }

    /// The oldest kept sequence number (`None`: nothing kept).
    pub fn first(&self) -> Result<Option<u64>, DiskError> {
        self.kept.first()
    }

    /// At most `limit` kept events with a sequence of at least `from`.
    pub fn page(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>, DiskError> {
        self.kept.page(from, limit)
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
            mode: tenure_core::Mode::Exclusive,
            holders: Vec::new(),
        }
    }

    fn kept(seqs: std::ops::RangeInclusive<u64>) -> History {
        let events: Vec<AuditEvent> = seqs.map(event).collect();
        History::new(AuditHistory::from_fn(move |from, limit| {
            Ok(events
                .iter()
                .filter(|e| e.seq >= from)
                .take(limit)
                .cloned()
                .collect())
        }))
    }

    #[test]
    fn tn_watch_001_from_zero_replays_nothing_and_a_start_ahead_misses_nothing() {
        let h = kept(1..=5);
        assert!(!h.gap(0, 5).unwrap());
        assert!(!h.gap(7, 5).unwrap(), "a start above now waits, no gap");
        assert!(!h.gap(3, 5).unwrap());
        let page = h.page(3, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn tn_watch_001_a_start_older_than_what_is_kept_is_a_gap_even_with_nothing_kept() {
        // Events 10..=12 kept: from 4, the ones before 10 are gone.
        let h = kept(10..=12);
        assert!(h.gap(4, 12).unwrap());
        assert!(!h.gap(10, 12).unwrap());
        // Nothing kept at all (a snapshot installed): any start at or
        // below now is a gap.
        let empty = History::new(AuditHistory::from_fn(|_, _| Ok(Vec::new())));
        assert!(empty.gap(1, 12).unwrap());
        assert!(empty.gap(12, 12).unwrap());
        assert!(!empty.gap(13, 12).unwrap());
    }
}
