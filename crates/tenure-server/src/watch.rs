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
