//! Prometheus metrics, through the `metrics` facade: code anywhere records
//! with its macros, and the binary installs the Prometheus recorder
//! ([`install`]) whose text the HTTP port serves at `GET /metrics`. Without
//! a recorder (tests, simulations) the macros do nothing.
//!
//! Every name starts with `tenure_` and carries its unit. Most are counted
//! where they happen (calls, refusals, audit events, flushes); the state of
//! raft and of the table is read when Prometheus scrapes ([`sample`]).

use std::task::{Context, Poll};

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tenure_raft::{Raft, TableReader};
use tokio::time::Instant;

use crate::error::ServerError;

/// Latency buckets, seconds: 100 µs to 10 s.
const SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Commands in one raft entry: 1 to 1024.
const COMMANDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Every metric a node exports (described in [`install`]).
pub const NAMES: [&str; 31] = [
    "tenure_raft_role",
    "tenure_raft_term",
    "tenure_raft_leader_id",
    "tenure_raft_commit_index",
    "tenure_raft_applied_index",
    "tenure_raft_last_log_index",
    "tenure_raft_leader_changes_total",
    "tenure_raft_proposals_total",
    "tenure_raft_commands_per_entry",
    "tenure_raft_queue_seconds",
    "tenure_raft_write_seconds",
    "tenure_raft_replicate_seconds",
    "tenure_raft_follower_append_seconds",
    "tenure_raft_apply_seconds",
    "tenure_log_flush_duration_seconds",
    "tenure_log_flushes_total",
    "tenure_snapshot_size_bytes",
    "tenure_snapshot_build_duration_seconds",
    "tenure_snapshot_copy_duration_seconds",
    "tenure_rpc_duration_seconds",
    "tenure_http_duration_seconds",
    "tenure_audit_events_total",
    "tenure_leases_active",
    "tenure_leases_waiting",
    "tenure_locks",
    "tenure_lock_delays",
    "tenure_keepalive_streams",
    "tenure_keepalive_renewals_total",
    "tenure_watch_subscribers",
    "tenure_auth_failures_total",
    "tenure_rate_limited_total",
];

/// Installs the process-wide Prometheus recorder and describes every
/// metric; the handle renders the text format.
pub fn install() -> Result<PrometheusHandle, ServerError> {
    let bad =
        |e: metrics_exporter_prometheus::BuildError| ServerError::Config(format!("metrics: {e}"));
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full("tenure_raft_commands_per_entry".into()),
            &COMMANDS,
        )
        .map_err(bad)?
        .install_recorder()
        .map_err(bad)?;
    describe();
    Ok(handle)
}

fn describe() {
    // Keep in step with NAMES (a test checks it).
    describe_gauge!(
        "tenure_raft_role",
        "1 for this node's raft role (label role), 0 for the others"
    );
    describe_gauge!("tenure_raft_term", "This node's current raft term");
    describe_gauge!(
        "tenure_raft_leader_id",
        "The leader this node knows of (0: none)"
    );
    describe_gauge!(
        "tenure_raft_commit_index",
        "The highest log index this node knows committed"
    );
    describe_gauge!(
        "tenure_raft_applied_index",
        "The highest log index this node applied"
    );
    describe_gauge!(
        "tenure_raft_last_log_index",
        "The highest log index in this node's log"
    );
    describe_counter!(
        "tenure_raft_leader_changes_total",
        "Times the leader this node knows of changed"
    );
    describe_counter!(
        "tenure_raft_proposals_total",
        "Log entries this node proposed as leader"
    );
    describe_histogram!(
        "tenure_raft_commands_per_entry",
        "Commands batched into one proposed log entry"
    );
    describe_histogram!(
        "tenure_raft_queue_seconds",
        Unit::Seconds,
        "A command's wait in the leader's proposer before its entry is written"
    );
    describe_histogram!(
        "tenure_raft_write_seconds",
        Unit::Seconds,
        "One proposed entry from its write to its answer: the leader's append and flush, replication, commit and apply"
    );
    describe_histogram!(
        "tenure_raft_replicate_seconds",
        Unit::Seconds,
        "A leader's AppendEntries round trip to one follower that carried entries (heartbeats not counted)"
    );
    describe_histogram!(
        "tenure_raft_follower_append_seconds",
        Unit::Seconds,
        "A follower's handling of an AppendEntries that carried entries, its flush included"
    );
    describe_histogram!(
        "tenure_raft_apply_seconds",
        Unit::Seconds,
        "Applying committed entries to the lease table, audit events stored"
    );
    describe_histogram!(
        "tenure_log_flush_duration_seconds",
        Unit::Seconds,
        "One flush of the log to stable storage, fdatasync included"
    );
    describe_counter!(
        "tenure_log_flushes_total",
        "Flushes of the log to stable storage"
    );
    describe_gauge!(
        "tenure_snapshot_size_bytes",
        Unit::Bytes,
        "Size of the last snapshot this node built"
    );
    describe_histogram!(
        "tenure_snapshot_build_duration_seconds",
        Unit::Seconds,
        "Building one snapshot of the lease table"
    );
    describe_histogram!(
        "tenure_snapshot_copy_duration_seconds",
        Unit::Seconds,
        "Copying the lease table for a snapshot: the only part of a build that holds up applies"
    );
    describe_histogram!(
        "tenure_rpc_duration_seconds",
        Unit::Seconds,
        "gRPC calls served, by method and result reason (OK on success)"
    );
    describe_histogram!(
        "tenure_http_duration_seconds",
        Unit::Seconds,
        "HTTP calls served, by route, HTTP method, status and result reason (OK on success)"
    );
    describe_counter!(
        "tenure_audit_events_total",
        "Events applied to the lease table, by kind (LEASE_EXPIRE counts expirations)"
    );
    describe_gauge!(
        "tenure_leases_active",
        "ACTIVE leases in this node's applied table"
    );
    describe_gauge!(
        "tenure_leases_waiting",
        "WAITING leases in this node's applied table"
    );
    describe_gauge!("tenure_locks", "Lock records in this node's applied table");
    describe_gauge!(
        "tenure_lock_delays",
        "Locks inside a lock-delay in this node's applied table"
    );
    describe_gauge!(
        "tenure_keepalive_streams",
        "Keep-alive streams open on this node"
    );
    describe_counter!(
        "tenure_keepalive_renewals_total",
        "Leases renewed through keep-alive streams on this node"
    );
    describe_gauge!(
        "tenure_watch_subscribers",
        "Watch streams open on this node"
    );
    describe_counter!(
        "tenure_auth_failures_total",
        "Calls refused for their credentials, by reason"
    );
    describe_counter!(
        "tenure_rate_limited_total",
        "Calls refused for a caller's rate limit"
    );
}

/// Reads raft's and the table's state into the gauges, before a scrape.
pub async fn sample(raft: &Raft, table: &TableReader) {
    let (state, term, leader, applied, last_log) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        (
            m.state,
            m.current_term,
            m.current_leader,
            m.last_applied.map_or(0, |l| l.index),
            m.last_log_index.unwrap_or(0),
        )
    };
    for role in ["leader", "follower", "candidate", "learner"] {
        let on = matches!(
            (role, state),
            ("leader", openraft::ServerState::Leader)
                | ("follower", openraft::ServerState::Follower)
                | ("candidate", openraft::ServerState::Candidate)
                | ("learner", openraft::ServerState::Learner)
        );
        gauge!("tenure_raft_role", "role" => role).set(if on { 1.0 } else { 0.0 });
    }
    gauge!("tenure_raft_term").set(term as f64);
    gauge!("tenure_raft_leader_id").set(leader.unwrap_or(0) as f64);
    gauge!("tenure_raft_applied_index").set(applied as f64);
    gauge!("tenure_raft_last_log_index").set(last_log as f64);
    if let Ok(committed) = raft
        .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
        .await
    {
        gauge!("tenure_raft_commit_index").set(committed as f64);
    }
    let (stats, delayed) = {
        let applied = table.read();
        (applied.table.stats(), applied.table.delayed_locks().count())
    };
    gauge!("tenure_leases_active").set(stats.active as f64);
    gauge!("tenure_leases_waiting").set(stats.waiting as f64);
    gauge!("tenure_locks").set(stats.locks as f64);
    gauge!("tenure_lock_delays").set(delayed as f64);
}

/// Counts leader changes and applied audit events while the node runs.
pub async fn watch(raft: Raft, table: TableReader) {
    let mut metrics = raft.metrics();
    let mut notices = table.subscribe();
    let mut leader = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = metrics.borrow_and_update().current_leader;
                if now != leader {
                    leader = now;
                    counter!("tenure_raft_leader_changes_total").increment(1);
                }
            }
            notice = notices.recv() => match notice {
                Ok(n) => {
                    for e in &n.events {
                        counter!("tenure_audit_events_total", "kind" => e.kind.as_str()).increment(1);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// A gauge held up while a stream lives.
pub struct Open(&'static str);

impl Open {
    /// One more on `gauge` until dropped.
    pub fn new(gauge: &'static str) -> Open {
        gauge!(gauge).increment(1.0);
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// The header an HTTP refusal carries its reason in (as gRPC's metadata).
pub const REASON_HEADER: &str = "tenure-reason";

/// Times every call of the HTTP port's API by its route (the template,
/// so lease ids and keys do not multiply the series), HTTP method, status
/// and reason (the `tenure-reason` header of a refusal; OK on success).
/// A stream (watch) is timed until its headers are sent.
pub async fn http_call(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let result = match response
        .headers()
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(reason) => reason.to_owned(),
        None if status.is_success() => "OK".to_owned(),
        None => status.as_u16().to_string(),
    };
    histogram!(
        "tenure_http_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status.as_u16().to_string(),
        "result" => result
    )
    .record(start.elapsed().as_secs_f64());
    response
}

/// The tower layer that times every gRPC call by method and result.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcLayer;

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc { inner }
    }
}

/// See [`RpcLayer`].
#[derive(Clone, Debug)]
pub struct Rpc<S> {
    inner: S,
}

type HttpRequest = tonic::codegen::http::Request<tonic::body::Body>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S> tower::Service<HttpRequest> for Rpc<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse> + Send,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let method = method_name(request.uri().path());
        let start = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A refusal is a trailers-only answer: its reason is in the
            // headers; a success's status comes later, in the trailers.
            let result = response
                .headers()
                .get("tenure-reason")
                .and_then(|v| v.to_str().ok())
                .map_or_else(
                    || match response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                    {
                        None | Some("0") => "OK".to_owned(),
                        Some(code) => format!("GRPC_{code}"),
                    },
                    str::to_owned,
                );
            histogram!("tenure_rpc_duration_seconds", "method" => method, "result" => result)
                .record(start.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

/// `Service/Method` of a gRPC path, from a fixed set so that callers
/// cannot make up label values.
fn method_name(path: &str) -> &'static str {
    const KNOWN: [&str; 22] = [
        "Lock/Acquire",
        "Lock/Renew",
        "Lock/Release",
        "Lock/Get",
        "Lock/List",
        "Lock/KeepAlive",
        "Lock/KeepAliveMany",
        "Lock/Watch",
        "Admin/ForceRelease",
        "Admin/Status",
        "Admin/AddNode",
        "Admin/RemoveNode",
        "Admin/TransferLeader",
        "Admin/ExportSnapshot",
        "Admin/Backup",
        "Admin/ImportSnapshot",
        "Admin/Restore",
        "Admin/Configure",
        "Raft/Vote",
        "Raft/AppendEntries",
        "Raft/InstallSnapshot",
        "Raft/Control",
    ];
    let short = path
        .trim_start_matches('/')
        .trim_start_matches("tenure.v1.")
        .trim_start_matches("tenure.raft.v1.");
    KNOWN
        .iter()
        .find(|k| **k == short)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn_metrics_001_every_rpc_of_the_proto_has_its_own_method_label() {
        // A method missing from the fixed set is counted as "other".
        let proto = include_str!("../../../proto/tenure/v1/lock.proto");
        let mut service = "";
        let mut count = 0;
        for line in proto.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("service ") {
                service = name.trim_end_matches(" {").trim();
            } else if let Some(rpc) = line.strip_prefix("rpc ") {
                let name = rpc.split('(').next().unwrap_or_default().trim();
                let path = format!("/tenure.v1.{service}/{name}");
                assert_eq!(method_name(&path), format!("{service}/{name}"), "{path}");
                count += 1;
            }
        }
        assert!(count >= 15, "only {count} rpcs found in lock.proto");
    }

    #[test]
    fn tn_metrics_001_every_described_metric_is_named_in_names() {
        let full = include_str!("metrics.rs");
        let source = full.split("#[cfg(test)]").next().unwrap_or(full);
        let described = [
            "describe_gauge!(",
            "describe_counter!(",
            "describe_histogram!(",
        ]
        .iter()
        .map(|m| source.matches(m).count())
        .sum::<usize>();
        assert_eq!(described, NAMES.len());
        for name in NAMES {
            assert!(name.starts_with("tenure_"), "{name}");
            // In NAMES, then in its description (and where it is set).
            assert!(
                source.matches(&format!("\"{name}\"")).count() >= 2,
                "{name} is in NAMES but not described"
            );
        }
    }
}
