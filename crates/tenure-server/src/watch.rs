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

    /// Events with a sequence number of at least `from`, and whether some
    /// before them (but at or after `from`) are no longer kept.
    pub fn since(&self, from: u64) -> (Vec<AuditEvent>, bool) {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: Vec<AuditEvent> = events.iter().filter(|e| e.seq >= from).cloned().collect();
        let first = events.front().map_or(u64::MAX, |e| e.seq);
        (kept, from > 0 && from < first)
    }
}
