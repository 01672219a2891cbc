//! The reference's HTTP/JSON contract, on the HTTP port, over the same
//! typed seam as gRPC: each request becomes the gRPC request it means and
//! goes to this node's own Lock or Admin service, in process. Routing
//! (followers forward to the leader), identification, conversion, the
//! write and its refusals are therefore exactly gRPC's.
//!
//! - `POST /leases/acquire` `{tenant_id, request_id, lock_key, owner_id,
//!   ttl_seconds | ttl_ms, wait_timeout_ms?}` → 201 and the lease
//! - `POST /leases/{lease_id}/renew` `{request_id, owner_id, ttl_seconds |
//!   ttl_ms, tenant_id?}` → 200
//! - `POST /leases/{lease_id}/release` `{request_id, owner_id, tenant_id?}`
//!   → 200
//! - `GET /locks/{lock_key}?tenant_id=…` → 200 and the lock state
//! - `POST /locks/{lock_key}/force-release` `{tenant_id, actor, reason}` →
//!   200 and the lock state
//!
//! Beyond the reference:
//! - `POST /leases/keep-alive` `{tenant_id, lease_ids, owner_id?}` → 200 and
//!   one answer per lease (renewed, or lost with its reason)
//! - `GET /locks?tenant_id=…&prefix=…&limit=…&page_token=…` → 200 and a page
//!   of locks in key order
//! - `GET /watch?tenant_id=…&prefix=…&from_sequence=…` → the audit stream
//!   as NDJSON, or as Server-Sent Events (`Accept: text/event-stream`, each
//!   event's `id` its sequence, so `Last-Event-ID` resumes after it)
//!
//! Identity is gRPC's: `authorization: Bearer …` with an auth file; without
//! one, `x-owner-id`, and force-release only with `x-role: ADMIN` (as the
//! reference did). Errors are `{code, message, status, server_time}` with
//! the HTTP class spec/reasons.md gives the reason. Path segments are
//! percent-decoded (`jobs%2Fnightly` is the key `jobs/nightly`). Times are
//! RFC 3339 on this node's wall clock.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tenure_core::{LeaseId, Reason};
use tenure_proto::v1::admin_server::Admin as _;
use tenure_proto::v1::lock_server::Lock as _;
use tenure_proto::{convert, v1};
use tenure_raft::{Connector, TableReader};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpConnectInfo;

use crate::admin::AdminService;
use crate::clock::{NodeClock, rfc3339};
use crate::errors::{OWNER_METADATA, ROLE_METADATA};
use crate::lock::LockService;
use crate::tls::HttpPeerChain;
use crate::watch::History;

/// The headers that carry a caller's identity into the gRPC request.
const IDENTITY_HEADERS: [&str; 3] = ["authorization", OWNER_METADATA, ROLE_METADATA];

/// The largest request body the API takes: a keep-alive of 1,024 leases
/// is about 20 KiB.
pub const MAX_BODY_BYTES: usize = 256 << 10;

/// What the handlers share.
struct Gateway<C: Connector> {
    lock: LockService<C>,
    admin: AdminService<C>,
    table: TableReader,
    history: History,
    clock: NodeClock,
    /// Whether credentials are checked (an auth file); without, admin calls
    /// need `x-role: ADMIN`.
    enforced: bool,
}

impl<C: Connector> Clone for Gateway<C> {
    fn clone(&self) -> Self {
        Gateway {
            lock: self.lock.clone(),
            admin: self.admin.clone(),
            table: self.table.clone(),
            history: self.history.clone(),
            clock: self.clock.clone(),
            enforced: self.enforced,
        }
    }
}

/// The routes of the reference's contract.
pub fn router<C: Connector>(
    lock: LockService<C>,
    admin: AdminService<C>,
    table: TableReader,
    history: History,
    clock: NodeClock,
    enforced: bool,
) -> axum::Router {
    axum::Router::new()
        .route("/leases/acquire", post(acquire::<C>))
        .route("/leases/{lease_id}/renew", post(renew::<C>))
        .route("/leases/{lease_id}/release", post(release::<C>))
        .route("/leases/keep-alive", post(keep_alive::<C>))
        .route("/locks", get(list::<C>))
        .route("/watch", get(watch::<C>))
        .route("/locks/{lock_key}", get(lock_state::<C>))
        .route("/locks/{lock_key}/force-release", post(force_release::<C>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Gateway {
            lock,
            admin,
            table,
            history,
            clock,
            enforced,
        })
}

/// An answer: a status and a JSON body.
type Answer = (StatusCode, Json<Value>);

impl<C: Connector> Gateway<C> {
    fn now_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    /// The error body for `reason`.
    fn error(&self, reason: Reason, message: impl Into<String>) -> Answer {
        let status =
            StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({
                "code": reason.as_str(),
                "message": message.into(),
                "status": status.as_u16(),
                "server_time": rfc3339(self.now_ms()),
            })),
        )
    }

    /// The answer of an in-process gRPC call: `code` and the body `show`
    /// makes of its message, or the HTTP error its refusal means.
    fn answer<T>(
        &self,
        result: Result<tonic::Response<T>, tonic::Status>,
        code: StatusCode,
        show: fn(&Self, &T) -> Value,
    ) -> Result<Answer, Answer> {
        match result {
            Ok(r) => Ok((code, Json(show(self, r.get_ref())))),
            Err(status) => Err(self.refused(&status)),
        }
    }

    /// A gRPC refusal as the HTTP error it means.
    fn refused(&self, status: &tonic::Status) -> Answer {
        let reason = convert::reason_of(status).unwrap_or(Reason::Unavailable);
        self.error(reason, status.message())
    }

    /// A lease as the reference showed it, with what Tenure adds.
    fn lease(&self, l: &v1::Lease) -> Value {
        let now = self.now_ms();
        let state = v1::LeaseState::try_from(l.state).unwrap_or(v1::LeaseState::Unspecified);
        let status = state
            .as_str_name()
            .trim_start_matches("LEASE_STATE_")
            .to_owned();
        let active = state == v1::LeaseState::Active;
        // The leader's deadline is the last grant or renewal plus the TTL.
        let expires_at = active.then(|| now.saturating_add(l.expires_in_ms));
        let renewed_at = expires_at.map(|e| e.saturating_sub(l.ttl_ms));
        let acquired_at = l
            .lease_id
            .parse::<LeaseId>()
            .ok()
            .and_then(|id| self.history.granted_at(id));
        json!({
            "lease_id": l.lease_id,
            "tenant_id": l.tenant_id,
            "lock_key": l.lock_key,
            "owner_id": l.owner_id,
            "status": status,
            "acquired_at": acquired_at.map(rfc3339),
            "expires_at": expires_at.map(rfc3339),
            "last_renewed_at": renewed_at.map(rfc3339),
            "fencing_token": l.fencing_token,
            "version": l.version,
            "server_time": rfc3339(now),
            "ttl_ms": l.ttl_ms,
            "ttl_seconds": l.ttl_ms / 1000,
            "expires_in_ms": l.expires_in_ms,
            "wait_timeout_ms": l.wait_timeout_ms,
            "mode": mode_name(l.mode),
            "limit": l.limit,
        })
    }

    /// A lock as the reference showed it.
    fn lock_state(&self, s: &v1::LockState) -> Value {
        json!({
            "tenant_id": s.tenant_id,
            "lock_key": s.lock_key,
            "has_active_lease": s.held,
            "active_lease": s.active_lease.as_ref().filter(|_| s.held).map(|l| self.lease(l)),
            "last_fencing_token": s.last_fencing_token,
            "waiters": s.waiters,
            "lock_delayed": s.lock_delayed,
            "holders": s.holders.iter().map(|l| self.lease(l)).collect::<Vec<_>>(),
            "limit": s.limit,
            "server_time": rfc3339(self.now_ms()),
        })
    }

    /// The tenant of a lease: the body's, when it names one, else the one
    /// this node's table holds it in (waiting a moment for a lease granted
    /// through another node that this one has not applied yet).
    async fn tenant_of(&self, lease_id: &str, given: Option<String>) -> Result<String, Answer> {
        if let Some(t) = given.filter(|t| !t.is_empty()) {
            return Ok(t);
        }
        let id: LeaseId = lease_id.parse().map_err(|_| {
            self.error(
                Reason::InvalidRequest,
                format!("malformed lease id {lease_id:?}"),
            )
        })?;
        for _ in 0..TENANT_TRIES {
            if let Some(t) = self.table.read().table.tenant_of(id) {
                return Ok(t.to_owned());
            }
            tokio::time::sleep(TENANT_PAUSE).await;
        }
        Err(self.error(Reason::LeaseNotFound, format!("no lease {lease_id}")))
    }
}

/// How long a renew or release without a tenant waits for this node to
/// apply a lease it does not know: `TENANT_TRIES` × `TENANT_PAUSE`.
const TENANT_TRIES: u32 = 10;
/// See [`TENANT_TRIES`].
const TENANT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// A gRPC request for `body`, carrying the caller's identity headers and
/// address, as if it came in over gRPC.
/// An identity header that is not printable ASCII is INVALID_REQUEST
/// (never taken for an absent one).
fn request<T, C: Connector>(
    g: &Gateway<C>,
    headers: &HeaderMap,
    caller: &Caller,
    body: T,
) -> Result<tonic::Request<T>, Answer> {
    let mut r = tonic::Request::new(body);
    for name in IDENTITY_HEADERS {
        if let Some(v) = headers.get(name) {
            let value = v
                .to_str()
                .ok()
                .and_then(|v| MetadataValue::try_from(v).ok())
                .ok_or_else(|| {
                    g.error(
                        Reason::InvalidRequest,
                        format!("header {name} is not printable ASCII"),
                    )
                })?;
            r.metadata_mut().insert(name, value);
        }
    }
    r.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(caller.peer),
    });
    if let Some(chain) = &caller.chain {
        r.extensions_mut().insert(chain.clone());
    }
    Ok(r)
}

/// Who is on the other end of an HTTP call: its address, and the
/// certificate chain it presented on the TLS handshake (the HTTP port
/// puts it in the request's extensions).
struct Caller {
    peer: SocketAddr,
    chain: Option<HttpPeerChain>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        let chain = parts.extensions.get::<HttpPeerChain>().cloned();
        Ok(Caller { peer, chain })
    }
}

/// The JSON body as `T`: a missing, null or malformed body, or a field of
/// the wrong type (a TTL sent as a string), is INVALID_REQUEST.
fn body<T: DeserializeOwned, C: Connector>(
    g: &Gateway<C>,
    bytes: &Result<Bytes, BytesRejection>,
) -> Result<T, Answer> {
    let bytes = bytes.as_ref().map_err(|e| {
        g.error(
            Reason::InvalidRequest,
            format!("request body: {e} (at most {MAX_BODY_BYTES} bytes)"),
        )
    })?;
    serde_json::from_slice(bytes)
        .map_err(|e| g.error(Reason::InvalidRequest, format!("request body: {e}")))
}

/// The query string as `T`: a malformed one, or a number that is not
/// one, is INVALID_REQUEST.
fn query<T: DeserializeOwned, C: Connector>(
    g: &Gateway<C>,
    raw: Option<&str>,
) -> Result<T, Answer> {
    serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| g.error(Reason::InvalidRequest, format!("query: {e}")))
}

/// A path segment, percent-decoded; one that does not decode to UTF-8 is
/// INVALID_REQUEST.
fn segment<C: Connector>(
    g: &Gateway<C>,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, Answer> {
    path.map(|Path(p)| p)
        .map_err(|e| g.error(Reason::InvalidRequest, format!("path: {e}")))
}

/// The TTL in milliseconds from `ttl_ms` or `ttl_seconds`.
fn ttl<C: Connector>(
    g: &Gateway<C>,
    ms: Option<u64>,
    seconds: Option<u64>,
    required: bool,
) -> Result<u64, Answer> {
    match (ms, seconds) {
        (Some(ms), _) => Ok(ms),
        (None, Some(s)) => Ok(s.saturating_mul(1000)),
        (None, None) if required => Err(g.error(
            Reason::InvalidRequest,
            "ttl_seconds (or ttl_ms) is required",
        )),
        (None, None) => Ok(0),
    }
}

/// The answer; a refusal also names its reason in the `tenure-reason`
/// header, as gRPC does in its metadata.
fn reply(answer: Result<Answer, Answer>) -> Response {
    match answer {
        Ok(a) => a.into_response(),
        Err(a) => refusal(a),
    }
}

fn refusal(a: Answer) -> Response {
    let reason = a.1.0["code"]
        .as_str()
        .and_then(|c| axum::http::HeaderValue::from_str(c).ok());
    let mut response = a.into_response();
    if let Some(reason) = reason {
        response
            .headers_mut()
            .insert(crate::metrics::REASON_HEADER, reason);
    }
    response
}

#[derive(Deserialize)]
struct AcquireBody {
    tenant_id: String,
    request_id: String,
    lock_key: String,
    #[serde(default)]
    owner_id: String,
    ttl_seconds: Option<u64>,
    ttl_ms: Option<u64>,
    #[serde(default)]
    wait_timeout_ms: u64,
    /// EXCLUSIVE (the default), SHARED or SEMAPHORE.
    #[serde(default)]
    mode: Option<String>,
    /// A SEMAPHORE's slots.
    #[serde(default)]
    limit: u32,
}

/// A `LockMode` as JSON names it: without the enum's prefix.
fn mode_name(mode: i32) -> &'static str {
    v1::LockMode::try_from(mode)
        .unwrap_or(v1::LockMode::Exclusive)
        .as_str_name()
        .trim_start_matches("LOCK_MODE_")
}

/// The `LockMode` a JSON `mode` names; `None` when it names none.
fn mode_from_name(name: Option<&str>) -> Option<v1::LockMode> {
    match name {
        None => Some(v1::LockMode::Exclusive),
        Some(n) => v1::LockMode::from_str_name(&format!("LOCK_MODE_{}", n.to_ascii_uppercase())),
    }
}

async fn acquire<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    reply(
        async {
            let b: AcquireBody = body(&g, &bytes)?;
            let ttl_ms = ttl(&g, b.ttl_ms, b.ttl_seconds, true)?;
            let mode = mode_from_name(b.mode.as_deref()).ok_or_else(|| {
                g.error(
                    Reason::InvalidRequest,
                    format!(
                        "mode {:?} is not EXCLUSIVE, SHARED or SEMAPHORE",
                        b.mode.as_deref().unwrap_or_default()
                    ),
                )
            })?;
            let r = request(
                &g,
                &headers,
                &caller,
                v1::AcquireRequest {
                    tenant_id: b.tenant_id,
                    lock_key: b.lock_key,
                    owner_id: b.owner_id,
                    request_id: b.request_id,
                    ttl_ms,
                    wait_timeout_ms: b.wait_timeout_ms,
                    mode: mode as i32,
                    limit: b.limit,
                },
            )?;
            g.answer(g.lock.acquire(r).await, StatusCode::CREATED, Gateway::lease)
        }
        .await,
    )
}

#[derive(Deserialize)]
struct RenewBody {
    request_id: String,
    #[serde(default)]
    owner_id: String,
    ttl_seconds: Option<u64>,
    ttl_ms: Option<u64>,
    tenant_id: Option<String>,
}

async fn renew<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    reply(
        async {
            let lease_id = segment(&g, path)?;
            let b: RenewBody = body(&g, &bytes)?;
            let ttl_ms = ttl(&g, b.ttl_ms, b.ttl_seconds, false)?;
            let tenant_id = g.tenant_of(&lease_id, b.tenant_id).await?;
            let r = request(
                &g,
                &headers,
                &caller,
                v1::RenewRequest {
                    tenant_id,
                    lease_id,
                    owner_id: b.owner_id,
                    request_id: b.request_id,
                    ttl_ms,
                },
            )?;
            g.answer(g.lock.renew(r).await, StatusCode::OK, Gateway::lease)
        }
        .await,
    )
}

#[derive(Deserialize)]
struct ReleaseBody {
    request_id: String,
    #[serde(default)]
    owner_id: String,
    tenant_id: Option<String>,
}

async fn release<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    reply(
        async {
            let lease_id = segment(&g, path)?;
            let b: ReleaseBody = body(&g, &bytes)?;
            let tenant_id = g.tenant_of(&lease_id, b.tenant_id).await?;
            let r = request(
                &g,
                &headers,
                &caller,
                v1::ReleaseRequest {
                    tenant_id,
                    lease_id,
                    owner_id: b.owner_id,
                    request_id: b.request_id,
                },
            )?;
            g.answer(g.lock.release(r).await, StatusCode::OK, Gateway::lease)
        }
        .await,
    )
}

#[derive(Deserialize)]
struct LockQuery {
    tenant_id: Option<String>,
    consistency: Option<String>,
}

async fn lock_state<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    reply(
        async {
            let lock_key = segment(&g, path)?;
            let q: LockQuery = query(&g, raw.as_deref())?;
            let tenant_id = q
                .tenant_id
                .filter(|t| !t.is_empty())
                .ok_or_else(|| g.error(Reason::InvalidRequest, "tenant_id is required"))?;
            let r = request(
                &g,
                &headers,
                &caller,
                v1::GetRequest {
                    tenant_id,
                    lock_key,
                    consistency: consistency(&g, q.consistency.as_deref())?,
                },
            )?;
            g.answer(g.lock.get(r).await, StatusCode::OK, Gateway::lock_state)
        }
        .await,
    )
}

#[derive(Deserialize)]
struct ForceBody {
    tenant_id: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    lease_id: String,
}

async fn force_release<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    reply(
        async {
            let lock_key = segment(&g, path)?;
            let b: ForceBody = body(&g, &bytes)?;
            // Without an auth file the Admin service grants the role by
            // `x-role: ADMIN`, as the reference did (FORBIDDEN without).
            let mut headers = headers.clone();
            // The actor is the caller on a development node, as x-owner-id.
            if !g.enforced
                && headers.get(OWNER_METADATA).is_none()
                && let Ok(actor) = b.actor.parse()
            {
                headers.insert(OWNER_METADATA, actor);
            }
            let r = request(
                &g,
                &headers,
                &caller,
                v1::ForceReleaseRequest {
                    tenant_id: b.tenant_id,
                    lock_key,
                    reason: b.reason,
                    lease_id: b.lease_id,
                },
            )?;
            g.answer(
                g.admin.force_release(r).await,
                StatusCode::OK,
                Gateway::lock_state,
            )
        }
        .await,
    )
}

#[derive(Deserialize)]
struct KeepAliveBody {
    tenant_id: String,
    lease_ids: Vec<String>,
    #[serde(default)]
    owner_id: String,
}

async fn keep_alive<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    reply(
        async {
            let b: KeepAliveBody = body(&g, &bytes)?;
            let tenant_id = b.tenant_id.clone();
            let r = request(
                &g,
                &headers,
                &caller,
                v1::KeepAliveManyRequest {
                    tenant_id: b.tenant_id,
                    lease_ids: b.lease_ids,
                    owner_id: b.owner_id,
                },
            )?;
            match g.lock.keep_alive_many(r).await {
                Ok(answer) => {
                    let now = g.now_ms();
                    let leases: Vec<Value> = answer
                        .get_ref()
                        .leases
                        .iter()
                        .map(|a| {
                            json!({
                                "lease_id": a.lease_id,
                                "alive": a.alive,
                                "ttl_ms": a.ttl_ms,
                                "expires_in_ms": a.expires_in_ms,
                                "expires_at": a.alive.then(|| rfc3339(now.saturating_add(a.expires_in_ms))),
                                "reason": (!a.alive).then_some(a.reason.as_str()),
                                "message": (!a.alive).then_some(a.message.as_str()),
                            })
                        })
                        .collect();
                    Ok((
                        StatusCode::OK,
                        Json(json!({
                            "tenant_id": tenant_id,
                            "leases": leases,
                            "server_time": rfc3339(now),
                        })),
                    ))
                }
                Err(status) => Err(g.refused(&status)),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
struct ListQuery {
    tenant_id: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    page_token: String,
    consistency: Option<String>,
}

/// `linearizable` (the default) or `stale`.
fn consistency<C: Connector>(g: &Gateway<C>, given: Option<&str>) -> Result<i32, Answer> {
    match given.unwrap_or("linearizable") {
        "linearizable" => Ok(v1::Consistency::Linearizable as i32),
        "stale" => Ok(v1::Consistency::Stale as i32),
        other => Err(g.error(
            Reason::InvalidRequest,
            format!("consistency {other:?}: linearizable or stale"),
        )),
    }
}

async fn list<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    reply(
        async {
            let q: ListQuery = query(&g, raw.as_deref())?;
            let tenant_id = q
                .tenant_id
                .filter(|t| !t.is_empty())
                .ok_or_else(|| g.error(Reason::InvalidRequest, "tenant_id is required"))?;
            let r = request(
                &g,
                &headers,
                &caller,
                v1::ListRequest {
                    tenant_id: tenant_id.clone(),
                    key_prefix: q.prefix,
                    page_size: q.limit,
                    page_token: q.page_token,
                    consistency: consistency(&g, q.consistency.as_deref())?,
                },
            )?;
            match g.lock.list(r).await {
                Ok(page) => {
                    let page = page.get_ref();
                    let locks: Vec<Value> = page.locks.iter().map(|l| g.lock_state(l)).collect();
                    Ok((
                        StatusCode::OK,
                        Json(json!({
                            "tenant_id": tenant_id,
                            "locks": locks,
                            "next_page_token": page.next_page_token,
                            "server_time": rfc3339(g.now_ms()),
                        })),
                    ))
                }
                Err(status) => Err(g.refused(&status)),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
struct WatchQuery {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    from_sequence: u64,
    #[serde(default)]
    all_tenants: bool,
    #[serde(default)]
    max_events: u64,
    #[serde(default)]
    timeout_ms: u64,
}

/// A watch event as JSON.
fn event_json(e: &v1::WatchEvent) -> Value {
    let kind = v1::AuditKind::try_from(e.kind).unwrap_or(v1::AuditKind::Unspecified);
    json!({
        "sequence": e.sequence,
        "log_index": e.log_index,
        "at": rfc3339(e.at_unix_ms),
        "at_unix_ms": e.at_unix_ms,
        "kind": kind.as_str_name().trim_start_matches("AUDIT_KIND_"),
        "tenant_id": e.tenant_id,
        "lock_key": e.lock_key,
        "lease_id": e.lease_id,
        "owner_id": e.owner_id,
        "fencing_token": e.fencing_token,
        "actor": e.actor,
        "detail": e.detail,
        "gap_before": e.gap_before,
        "mode": mode_name(e.mode),
        "limit": e.limit,
        "holders": e.holders.iter().map(|h| json!({
            "lease_id": h.lease_id,
            "owner_id": h.owner_id,
            "fencing_token": h.fencing_token,
            "mode": mode_name(h.mode),
            "limit": h.limit,
        })).collect::<Vec<_>>(),
    })
}

/// How often an idle Server-Sent Events stream sends a comment, so that
/// proxies keep it open.
const SSE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

async fn watch<C: Connector>(
    State(g): State<Gateway<C>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    use tokio_stream::StreamExt as _;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let started = async {
        let q: WatchQuery = query(&g, raw.as_deref())?;
        // An EventSource reconnecting names the last event it had.
        let resume = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|last| last.saturating_add(1));
        let r = request(
            &g,
            &headers,
            &caller,
            v1::WatchRequest {
                tenant_id: q.tenant_id,
                key_prefix: q.prefix,
                from_sequence: resume.unwrap_or(q.from_sequence),
                include_all_tenants: q.all_tenants,
            },
        )?;
        match g.lock.watch(r).await {
            Ok(stream) => Ok((stream.into_inner(), q.max_events, q.timeout_ms)),
            Err(status) => Err(g.refused(&status)),
        }
    }
    .await;
    let (mut events, max_events, timeout_ms) = match started {
        Ok(s) => s,
        Err(answer) => return refusal(answer),
    };
    // One task reads the watch and ends it after `max_events` events or
    // `timeout_ms` (either 0: never), or at the first error, sent last.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<v1::WatchEvent, Value>>(64);
    let clock = g.clone();
    tokio::spawn(async move {
        let deadline = (timeout_ms > 0)
            .then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms));
        let mut sent = 0u64;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, events.next()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => events.next().await,
            };
            let item = match next {
                None => return,
                Some(Ok(e)) => Ok(e),
                Some(Err(status)) => Err(clock.refused(&status).1.0),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
            sent += 1;
            if max_events > 0 && sent >= max_events {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    if sse {
        use axum::response::sse::{Event, KeepAlive, Sse};
        let events = stream.map(|item| {
            Ok::<_, std::convert::Infallible>(match item {
                Ok(e) => Event::default()
                    .id(e.sequence.to_string())
                    .event("lock")
                    .data(event_json(&e).to_string()),
                Err(error) => Event::default().event("error").data(error.to_string()),
            })
        });
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
            .into_response()
    } else {
        let lines = stream.map(|item| {
            let value = match item {
                Ok(e) => event_json(&e),
                Err(error) => json!({ "error": error }),
            };
            let mut line = value.to_string().into_bytes();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            axum::body::Body::from_stream(lines),
        )
            .into_response()
    }
}
