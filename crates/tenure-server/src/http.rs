//! The node's HTTP port (`--http-listen`): the probes an operator's
//! orchestrator asks, served beside gRPC, over TLS when the node has TLS.
//!
//! - `GET /healthz`: 200 `{"status":"ok","version":…}` while the process
//!   serves; it says nothing about the cluster.
//! - `GET /readyz`: 200 while this node can answer for the cluster: it
//!   hears a leader (within the election window; leading, it is in office),
//!   and it has applied its
//!   log to within [`READY_LAG`] entries of the commit index it knows;
//!   otherwise 503 with the reason. A node that is not ready should get no
//!   traffic; it is not broken (a liveness probe must use /healthz).
//! - `GET /openapi.yaml`: the HTTP API's OpenAPI document.
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]), when the binary
//!   installed the recorder ([`metrics_router`]).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tenure_raft::{Elections, Raft, TableReader};

use crate::leases::LeaseTimers;

/// How far this node's applied index may trail the commit index it knows
/// for it to be ready.
pub const READY_LAG: u64 = 1_000;

/// How long a readiness check may take (it asks raft for its state).
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Probes {
    raft: Raft,
    timers: LeaseTimers,
    elections: Elections,
    /// How long a follower may go without hearing its leader: the
    /// election window's upper bound.
    silence: Duration,
}

/// The router of the HTTP port.
pub fn router(
    raft: Raft,
    timers: LeaseTimers,
    elections: Elections,
    silence: Duration,
) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.yaml", get(openapi))
        .with_state(Probes {
            raft,
            timers,
            elections,
            silence,
        })
}

/// The HTTP API's OpenAPI document (spec/openapi.yaml).
pub const OPENAPI: &str = include_str!("../../../spec/openapi.yaml");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI,
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    match readiness(&p).await {
        Ok(body) => (StatusCode::OK, Json(body)),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        ),
    }
}

/// Ready, with the numbers; or why not.
async fn readiness(p: &Probes) -> Result<serde_json::Value, String> {
    let (id, leader, applied) = {
        let metrics = p.raft.metrics();
        let m = metrics.borrow();
        (
            m.id,
            m.current_leader,
            m.last_applied.map_or(0, |l| l.index),
        )
    };
    let Some(leader) = leader else {
        return Err("no leader known".into());
    };
    if leader == id && !p.timers.active() {
        return Err("elected leader, not yet in office".into());
    }
    // A follower cut off from its leader keeps its term and its leader's
    // id (it does not campaign without a majority), so what counts is
    // whether it still hears that leader.
    if leader != id && !p.elections.heard_within(p.silence) {
        return Err(format!(
            "leader {leader} not heard for {} ms",
            p.silence.as_millis()
        ));
    }
    let committed = tokio::time::timeout(
        READY_TIMEOUT,
        p.raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index)),
    )
    .await
    .map_err(|_| "raft did not answer in time".to_owned())?
    .map_err(|e| format!("raft: {e}"))?;
    if committed.saturating_sub(applied) > READY_LAG {
        return Err(format!(
            "applied index {applied} trails the commit index {committed} by more than {READY_LAG}"
        ));
    }
    Ok(json!({
        "status": "ready",
        "node_id": id,
        "leader_id": leader,
        "applied_index": applied,
        "commit_index": committed,
    }))
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    raft: Raft,
    table: TableReader,
}

/// `GET /metrics`: raft's and the table's state read now, then every
/// metric in Prometheus's text format.
pub fn metrics_router(handle: PrometheusHandle, raft: Raft, table: TableReader) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            handle,
            raft,
            table,
        })
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    crate::metrics::sample(&s.raft, &s.table).await;
    s.handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.handle.render(),
    )
}
