//! JSON logs name the node and its term on every line: `tenure serve
//! --log-format json` writes one object per line with `timestamp`,
//! `level`, `target`, `fields`, and — once the node runs — `node_id` and
//! `term`, so lines from several nodes can be merged and read in order of
//! leadership.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The node this process runs (0: none yet, or not `serve`).
static NODE: AtomicU64 = AtomicU64::new(0);
/// Its current raft term.
static TERM: AtomicU64 = AtomicU64::new(0);

/// Names the node on every line from now on.
pub fn set_node(id: u64) {
    NODE.store(id, Ordering::Relaxed);
}

/// Follows the node's term until its raft stops.
pub async fn follow_term(raft: tenure_raft::Raft) {
    let mut metrics = raft.metrics();
    loop {
        let term = metrics.borrow_and_update().current_term;
        TERM.store(term, Ordering::Relaxed);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The JSON format with `node_id` and `term` put first in each object.
pub struct WithNode(pub Format<Json>);

impl<S, N> FormatEvent<S, N> for WithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    Format<Json>: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let node = NODE.load(Ordering::Relaxed);
        if node == 0 {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"node_id\":{node},\"term\":{},{rest}",
                TERM.load(Ordering::Relaxed)
            ),
            None => writer.write_str(&line),
        }
    }
}

/// The JSON fields formatter the format above goes with.
pub fn json_fields() -> JsonFields {
    JsonFields::new()
}
