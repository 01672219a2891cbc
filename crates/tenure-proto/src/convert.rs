//! The one place where the wire types of `tenure.v1` meet tenure-core.
//!
//! Everything that turns a proto message into a core command or view, or the
//! other way round, lives here, and so does the error model: which gRPC code
//! each [`Reason`] gets, and how the reason and the leader's address travel
//! in a [`tonic::Status`]. The server, the client library and the tests all
//! go through these functions, so a reason cannot map to one code in one
//! place and another elsewhere (TN-ERR-001).
//!
//! ## What this module checks, and what it leaves to the core
//! It checks only what the core cannot: that a lease id is one the service
//! issues, that an enum number is known, and that the request's `owner_id`
//! agrees with the identity the transport authenticated. Lengths, alphabets,
//! TTL bounds and wait bounds are the core's (its validation runs inside the
//! replicated apply, against the replicated configuration), so TTLs and wait
//! timeouts pass through exactly as given.
//!
//! ## Identity
//! Request conversions take the authenticated caller (`owner` or `actor`)
//! as a separate argument and never trust the message for it: an empty
//! `owner_id` means "the caller", a different one is OWNER_TOKEN_MISMATCH.
//!
//! ## Optional fields
//! proto3 strings have no "absent": an empty string stands for `None`
//! (`lease_id`, `owner_id` and `detail` of a watch event, the `lease_id` of a
//! force-release). A core `Some("")` therefore comes back as `None`; the core
//! never produces one.

use std::str::FromStr;

use prost::Message as _;
use prost::bytes::Bytes;
use tenure_core::{
    Acquire, AuditEvent, AuditKind, EndReason, Error, ForceRelease, Holder, LeaseId, LeaseState,
    LeaseView, LockView, Mode, Reason, Release, Renew,
};
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::rpc;
use crate::v1;

/// The `ErrorInfo.domain` of every reason Tenure defines.
pub const ERROR_DOMAIN: &str = "tenure.dev";

/// The metadata entry carrying the stable reason string of a failed call.
pub const REASON_METADATA: &str = "tenure-reason";

/// The metadata entry carrying the leader's address, when the node knows it.
pub const LEADER_METADATA: &str = "tenure-leader";

/// The `ErrorInfo.metadata` key carrying the leader's address.
pub const LEADER_INFO_KEY: &str = "leader";

/// Why a proto message could not become a core value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A lease id is not in the form the service issues (16 lowercase hex digits).
    #[error("{field}: {detail}")]
    InvalidLeaseId {
        /// The field that held it.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A `page_token` is not one a previous `List` page returned.
    #[error("page_token {0:?} is not a token a previous page returned")]
    InvalidPageToken(String),
    /// An enum field holds a number this build does not know.
    #[error("{field}: unknown enum value {value}")]
    UnknownEnum {
        /// The field that held it.
        field: &'static str,
        /// The number received.
        value: i32,
    },
    /// An enum field is UNSPECIFIED where a value is required.
    #[error("{field} is unspecified")]
    Unspecified {
        /// The field.
        field: &'static str,
    },
    /// A message contradicts itself or lacks a part it needs.
    #[error("{field}: {detail}")]
    Malformed {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
    /// The call carries no caller identity.
    #[error("the call carries no caller identity")]
    OwnerTokenRequired,
    /// The request's `owner_id` is not the authenticated caller.
    #[error("owner_id {claimed:?} is not the authenticated caller {authenticated:?}")]
    OwnerTokenMismatch {
        /// The owner the request named.
        claimed: String,
        /// The identity the transport authenticated.
        authenticated: String,
    },
}

impl ConvertError {
    /// The stable reason a server answers this failure with.
    pub fn reason(&self) -> Reason {
        match self {
            ConvertError::InvalidLeaseId { .. }
            | ConvertError::InvalidPageToken(_)
            | ConvertError::UnknownEnum { .. }
            | ConvertError::Unspecified { .. }
            | ConvertError::Malformed { .. } => Reason::InvalidRequest,
            ConvertError::OwnerTokenRequired => Reason::OwnerTokenRequired,
            ConvertError::OwnerTokenMismatch { .. } => Reason::OwnerTokenMismatch,
        }
    }

    /// This failure as a gRPC status; see [`status`].
    pub fn to_status(&self, leader: Option<&str>) -> tonic::Status {
        status(self.reason(), self.to_string(), leader)
    }
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> tonic::Status {
        e.to_status(None)
    }
}

// ---------------------------------------------------------------------------
// Identity and ids
// ---------------------------------------------------------------------------

/// The owner a request acts as: the authenticated caller. `claimed` is the
/// request's `owner_id`; empty means the caller, anything else must equal it.
pub fn owner(claimed: &str, authenticated: &str) -> Result<String, ConvertError> {
    if authenticated.is_empty() {
        return Err(ConvertError::OwnerTokenRequired);
    }
    if !claimed.is_empty() && claimed != authenticated {
        return Err(ConvertError::OwnerTokenMismatch {
            claimed: claimed.to_owned(),
            authenticated: authenticated.to_owned(),
        });
    }
    Ok(authenticated.to_owned())
}

/// Parses a `lease_id` field; anything the service did not issue is refused.
pub fn lease_id(value: &str) -> Result<LeaseId, ConvertError> {
    parse_lease_id("lease_id", value)
}

fn parse_lease_id(field: &'static str, value: &str) -> Result<LeaseId, ConvertError> {
    if value.is_empty() {
        return Err(ConvertError::InvalidLeaseId {
            field,
            detail: "is required".to_owned(),
        });
    }
    LeaseId::from_str(value).map_err(|detail| ConvertError::InvalidLeaseId { field, detail })
}

/// An optional lease id: empty is `None`.
fn optional_lease_id(field: &'static str, value: &str) -> Result<Option<LeaseId>, ConvertError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_lease_id(field, value).map(Some)
    }
}

fn optional_string(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

// ---------------------------------------------------------------------------
// Requests: proto -> core
// ---------------------------------------------------------------------------

/// An `AcquireRequest` as the core command, acting as `authenticated`.
pub fn acquire(req: &v1::AcquireRequest, authenticated: &str) -> Result<Acquire, ConvertError> {
    Ok(Acquire {
        tenant: req.tenant_id.clone(),
        key: req.lock_key.clone(),
        owner: owner(&req.owner_id, authenticated)?,
        request_id: req.request_id.clone(),
        ttl_ms: req.ttl_ms,
        wait_timeout_ms: req.wait_timeout_ms,
    })
}

/// What a `RenewRequest` asks for: a plain renewal that keeps the TTL
/// (never logged; the server checks it with `Table::check_renew` and extends
/// its deadline after a quorum read) or a TTL change (a logged `Renew`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewCall {
    /// `ttl_ms` 0: keep the TTL.
    Keep(KeepAliveTarget),
    /// `ttl_ms` > 0: change the TTL through the log.
    Change(Renew),
}

/// A `RenewRequest`, acting as `authenticated`: which of the two renewals
/// it is is decided here, once, for every caller.
pub fn renew(req: &v1::RenewRequest, authenticated: &str) -> Result<RenewCall, ConvertError> {
    let tenant = req.tenant_id.clone();
    let lease_id = lease_id(&req.lease_id)?;
    let owner = owner(&req.owner_id, authenticated)?;
    if req.ttl_ms == 0 {
        return Ok(RenewCall::Keep(KeepAliveTarget {
            tenant,
            lease_id,
            owner,
        }));
    }
    Ok(RenewCall::Change(Renew {
        tenant,
        lease_id,
        owner,
        request_id: req.request_id.clone(),
        ttl_ms: req.ttl_ms,
    }))
}

/// A `ReleaseRequest` as the core command, acting as `authenticated`.
pub fn release(req: &v1::ReleaseRequest, authenticated: &str) -> Result<Release, ConvertError> {
    Ok(Release {
        tenant: req.tenant_id.clone(),
        lease_id: lease_id(&req.lease_id)?,
        owner: owner(&req.owner_id, authenticated)?,
        request_id: req.request_id.clone(),
    })
}

/// A `ForceReleaseRequest` as the core command, by the authenticated admin
/// `actor` (the server checks the admin role before).
pub fn force_release(
    req: &v1::ForceReleaseRequest,
    actor: &str,
) -> Result<ForceRelease, ConvertError> {
    if actor.is_empty() {
        return Err(ConvertError::OwnerTokenRequired);
    }
    Ok(ForceRelease {
        tenant: req.tenant_id.clone(),
        key: req.lock_key.clone(),
        actor: actor.to_owned(),
        reason: req.reason.clone(),
        lease_id: optional_lease_id("lease_id", &req.lease_id)?,
    })
}

/// The lease one `KeepAliveRequest` asks to keep alive, and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAliveTarget {
    /// The tenant the lease must belong to.
    pub tenant: String,
    /// The lease.
    pub lease_id: LeaseId,
    /// The authenticated caller, who must own the lease.
    pub owner: String,
}

/// A `KeepAliveRequest` as the arguments of `Table::check_renew`, acting as
/// `authenticated`.
pub fn keep_alive(
    req: &v1::KeepAliveRequest,
    authenticated: &str,
) -> Result<KeepAliveTarget, ConvertError> {
    Ok(KeepAliveTarget {
        tenant: req.tenant_id.clone(),
        lease_id: lease_id(&req.lease_id)?,
        owner: owner(&req.owner_id, authenticated)?,
    })
}

// ---------------------------------------------------------------------------
// Requests: core -> proto (for clients, and to round-trip in tests)
// ---------------------------------------------------------------------------

/// The `AcquireRequest` that asks for `c` (naming its owner explicitly).
pub fn acquire_request(c: &Acquire) -> v1::AcquireRequest {
    acquire_request_in(c, Mode::Exclusive)
}

/// The `AcquireRequest` that asks for `c` in `mode`.
pub fn acquire_request_in(c: &Acquire, mode: Mode) -> v1::AcquireRequest {
    v1::AcquireRequest {
        tenant_id: c.tenant.clone(),
        lock_key: c.key.clone(),
        owner_id: c.owner.clone(),
        request_id: c.request_id.clone(),
        ttl_ms: c.ttl_ms,
        wait_timeout_ms: c.wait_timeout_ms,
        mode: lock_mode(mode) as i32,
        limit: mode.limit(),
    }
}

/// The `RenewRequest` that asks for `c`.
pub fn renew_request(c: &Renew) -> v1::RenewRequest {
    v1::RenewRequest {
        tenant_id: c.tenant.clone(),
        lease_id: c.lease_id.to_string(),
        owner_id: c.owner.clone(),
        request_id: c.request_id.clone(),
        ttl_ms: c.ttl_ms,
    }
}

/// The `ReleaseRequest` that asks for `c`.
pub fn release_request(c: &Release) -> v1::ReleaseRequest {
    v1::ReleaseRequest {
        tenant_id: c.tenant.clone(),
        lease_id: c.lease_id.to_string(),
        owner_id: c.owner.clone(),
        request_id: c.request_id.clone(),
    }
}

/// The `ForceReleaseRequest` that asks for `c` (the actor is not a field:
/// it is whoever sends the request).
pub fn force_release_request(c: &ForceRelease) -> v1::ForceReleaseRequest {
    v1::ForceReleaseRequest {
        tenant_id: c.tenant.clone(),
        lock_key: c.key.clone(),
        reason: c.reason.clone(),
        lease_id: c.lease_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// Replies: core -> proto and back
// ---------------------------------------------------------------------------

/// A lease as the API shows it. `expires_in_ms` is the time left until the
/// leader's deadline, which only the server knows; pass 0 for a terminal
/// lease.
pub fn lease(view: &LeaseView, expires_in_ms: u64) -> v1::Lease {
    v1::Lease {
        lease_id: view.id.to_string(),
        tenant_id: view.tenant.to_string(),
        lock_key: view.key.to_string(),
        owner_id: view.owner.to_string(),
        state: lease_state(view.state) as i32,
        fencing_token: view.token,
        ttl_ms: view.ttl_ms,
        version: view.version,
        expires_in_ms,
        wait_timeout_ms: view.wait_timeout_ms,
        end_reason: end_reason(view.ended) as i32,
        mode: lock_mode(view.mode) as i32,
        limit: view.mode.limit(),
    }
}

/// A core mode as the API's `LockMode` (the limit travels beside it).
pub fn lock_mode(mode: Mode) -> v1::LockMode {
    match mode {
        Mode::Exclusive => v1::LockMode::Exclusive,
        Mode::Shared => v1::LockMode::Shared,
        Mode::Semaphore(_) => v1::LockMode::Semaphore,
    }
}

/// The API's `mode` and `limit` as a core mode: SEMAPHORE needs a limit of
/// at least 1, the other modes a limit of 0.
pub fn mode_from(field: &'static str, mode: i32, limit: u32) -> Result<Mode, ConvertError> {
    match (v1::LockMode::try_from(mode), limit) {
        (Ok(v1::LockMode::Exclusive), 0) => Ok(Mode::Exclusive),
        (Ok(v1::LockMode::Shared), 0) => Ok(Mode::Shared),
        (Ok(v1::LockMode::Semaphore), n) if n > 0 => Ok(Mode::Semaphore(n)),
        (Ok(v1::LockMode::Semaphore), _) => Err(ConvertError::Malformed {
            field,
            detail: "a SEMAPHORE needs a limit of at least 1",
        }),
        (Ok(_), _) => Err(ConvertError::Malformed {
            field,
            detail: "a limit goes only with the SEMAPHORE mode",
        }),
        (Err(_), _) => Err(ConvertError::UnknownEnum { field, value: mode }),
    }
}

/// The mode an `AcquireRequest` asks for.
pub fn acquire_mode(req: &v1::AcquireRequest) -> Result<Mode, ConvertError> {
    mode_from("mode", req.mode, req.limit)
}

/// A `Lease` back as the core's view (`expires_in_ms` is not part of it).
pub fn lease_view(lease: &v1::Lease) -> Result<LeaseView, ConvertError> {
    Ok(LeaseView {
        id: parse_lease_id("lease.lease_id", &lease.lease_id)?,
        tenant: lease.tenant_id.as_str().into(),
        key: lease.lock_key.as_str().into(),
        owner: lease.owner_id.as_str().into(),
        ttl_ms: lease.ttl_ms,
        state: lease_state_from(lease.state)?,
        token: lease.fencing_token,
        version: lease.version,
        wait_timeout_ms: lease.wait_timeout_ms,
        ended: end_reason_from(lease.end_reason)?,
        mode: mode_from("lease.mode", lease.mode, lease.limit)?,
    })
}

/// A lock as the API shows it; `active_expires_in_ms` is the holder's time
/// left (ignored when the lock is not held).
pub fn lock_state(view: &LockView, expires_in_ms: impl Fn(LeaseId) -> u64) -> v1::LockState {
    v1::LockState {
        tenant_id: view.tenant.to_string(),
        lock_key: view.key.to_string(),
        held: view.active.is_some(),
        active_lease: view.active.as_ref().map(|l| lease(l, expires_in_ms(l.id))),
        last_fencing_token: view.last_token,
        waiters: view.waiters,
        lock_delayed: view.delayed,
        holders: view
            .holders
            .iter()
            .map(|l| lease(l, expires_in_ms(l.id)))
            .collect(),
        limit: view.limit,
    }
}

/// A `LockState` back as the core's view.
pub fn lock_view(state: &v1::LockState) -> Result<LockView, ConvertError> {
    let active = match (state.held, &state.active_lease) {
        (true, Some(l)) => Some(lease_view(l)?),
        (false, None) => None,
        (true, None) => {
            return Err(ConvertError::Malformed {
                field: "active_lease",
                detail: "the lock is held but names no lease",
            });
        }
        (false, Some(_)) => {
            return Err(ConvertError::Malformed {
                field: "active_lease",
                detail: "the lock is not held but names a lease",
            });
        }
    };
    let holders = state
        .holders
        .iter()
        .map(lease_view)
        .collect::<Result<Vec<_>, _>>()?;
    if holders.first().map(|l| l.id) != active.as_ref().map(|l| l.id) {
        return Err(ConvertError::Malformed {
            field: "holders",
            detail: "the first holder is not the active lease",
        });
    }
    Ok(LockView {
        tenant: state.tenant_id.as_str().into(),
        key: state.lock_key.as_str().into(),
        active,
        holders,
        limit: state.limit,
        last_token: state.last_fencing_token,
        waiters: state.waiters,
        delayed: state.lock_delayed,
    })
}

/// An audit event as a `WatchEvent` (`gap_before` false: the server sets it).
pub fn watch_event(event: &AuditEvent) -> v1::WatchEvent {
    v1::WatchEvent {
        sequence: event.seq,
        log_index: event.index,
        at_unix_ms: event.at_ms,
        kind: audit_kind(event.kind) as i32,
        tenant_id: event.tenant.to_string(),
        lock_key: event.key.to_string(),
        lease_id: event.lease_id.map(|id| id.to_string()).unwrap_or_default(),
        owner_id: event.owner.as_deref().unwrap_or_default().to_owned(),
        fencing_token: event.token,
        actor: event.actor.to_string(),
        detail: event.detail.clone().unwrap_or_default(),
        gap_before: false,
        mode: lock_mode(event.mode) as i32,
        limit: event.mode.limit(),
        holders: event
            .holders
            .iter()
            .map(|h| v1::Holder {
                lease_id: h.lease_id.to_string(),
                owner_id: h.owner.to_string(),
                fencing_token: h.token,
                mode: lock_mode(h.mode) as i32,
                limit: h.mode.limit(),
            })
            .collect(),
    }
}

/// A `WatchEvent` back as the core's audit event.
pub fn audit_event(event: &v1::WatchEvent) -> Result<AuditEvent, ConvertError> {
    Ok(AuditEvent {
        seq: event.sequence,
        index: event.log_index,
        at_ms: event.at_unix_ms,
        kind: audit_kind_from(event.kind)?,
        tenant: event.tenant_id.as_str().into(),
        key: event.lock_key.as_str().into(),
        lease_id: optional_lease_id("lease_id", &event.lease_id)?,
        owner: optional_string(&event.owner_id).map(Into::into),
        token: event.fencing_token,
        actor: event.actor.as_str().into(),
        detail: optional_string(&event.detail),
        mode: mode_from("mode", event.mode, event.limit)?,
        holders: event
            .holders
            .iter()
            .map(|h| {
                Ok(Holder {
                    lease_id: parse_lease_id("holders.lease_id", &h.lease_id)?,
                    owner: h.owner_id.as_str().into(),
                    token: h.fencing_token,
                    mode: mode_from("holders.mode", h.mode, h.limit)?,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()?,
    })
}

/// The answer to a keep-alive that renewed `view`; `expires_in_ms` is the
/// time to the leader's new deadline.
pub fn keep_alive_alive(
    req: &v1::KeepAliveRequest,
    view: &LeaseView,
    expires_in_ms: u64,
) -> v1::KeepAliveResponse {
    v1::KeepAliveResponse {
        lease_id: req.lease_id.clone(),
        alive: true,
        ttl_ms: view.ttl_ms,
        expires_in_ms,
        reason: String::new(),
        client_seq: req.client_seq,
        message: String::new(),
    }
}

/// The answer to a keep-alive whose lease is lost to the caller.
pub fn keep_alive_lost(
    req: &v1::KeepAliveRequest,
    reason: Reason,
    message: impl Into<String>,
) -> v1::KeepAliveResponse {
    v1::KeepAliveResponse {
        lease_id: req.lease_id.clone(),
        alive: false,
        ttl_ms: 0,
        expires_in_ms: 0,
        reason: reason.as_str().to_owned(),
        client_seq: req.client_seq,
        message: message.into(),
    }
}

/// An opaque `next_page_token` resuming a listing after `last_key`.
pub fn page_token(last_key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut token = String::with_capacity(last_key.len() * 2);
    for b in last_key.bytes() {
        token.push(char::from(HEX[usize::from(b >> 4)]));
        token.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    token
}

/// The key a `page_token` resumes after; `None` for the first page.
pub fn page_after(token: &str) -> Result<Option<String>, ConvertError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ConvertError::InvalidPageToken(token.to_owned());
    let digits = token.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut key = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => key.push(hi << 4 | lo),
            _ => return Err(invalid()),
        }
    }
    String::from_utf8(key).map(Some).map_err(|_| invalid())
}

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

/// A core lease state as the proto enum.
pub fn lease_state(state: LeaseState) -> v1::LeaseState {
    match state {
        LeaseState::Waiting => v1::LeaseState::Waiting,
        LeaseState::Active => v1::LeaseState::Active,
        LeaseState::Released => v1::LeaseState::Released,
        LeaseState::Expired => v1::LeaseState::Expired,
    }
}

/// A proto `LeaseState` number as the core state; UNSPECIFIED is refused.
pub fn lease_state_from(value: i32) -> Result<LeaseState, ConvertError> {
    const FIELD: &str = "state";
    match v1::LeaseState::try_from(value) {
        Ok(v1::LeaseState::Waiting) => Ok(LeaseState::Waiting),
        Ok(v1::LeaseState::Active) => Ok(LeaseState::Active),
        Ok(v1::LeaseState::Released) => Ok(LeaseState::Released),
        Ok(v1::LeaseState::Expired) => Ok(LeaseState::Expired),
        Ok(v1::LeaseState::Unspecified) => Err(ConvertError::Unspecified { field: FIELD }),
        Err(_) => Err(ConvertError::UnknownEnum {
            field: FIELD,
            value,
        }),
    }
}

/// How a lease ended, as the proto enum; `None` (not ended) is UNSPECIFIED.
pub fn end_reason(ended: Option<EndReason>) -> v1::EndReason {
    match ended {
        None => v1::EndReason::Unspecified,
        Some(EndReason::Released) => v1::EndReason::Released,
        Some(EndReason::Expired) => v1::EndReason::Expired,
        Some(EndReason::ForceReleased) => v1::EndReason::ForceReleased,
        Some(EndReason::WaitTimedOut) => v1::EndReason::WaitTimedOut,
        Some(EndReason::WaitAbandoned) => v1::EndReason::WaitAbandoned,
    }
}

/// A proto `EndReason` number as the core's; UNSPECIFIED is `None`.
pub fn end_reason_from(value: i32) -> Result<Option<EndReason>, ConvertError> {
    match v1::EndReason::try_from(value) {
        Ok(v1::EndReason::Unspecified) => Ok(None),
        Ok(v1::EndReason::Released) => Ok(Some(EndReason::Released)),
        Ok(v1::EndReason::Expired) => Ok(Some(EndReason::Expired)),
        Ok(v1::EndReason::ForceReleased) => Ok(Some(EndReason::ForceReleased)),
        Ok(v1::EndReason::WaitTimedOut) => Ok(Some(EndReason::WaitTimedOut)),
        Ok(v1::EndReason::WaitAbandoned) => Ok(Some(EndReason::WaitAbandoned)),
        Err(_) => Err(ConvertError::UnknownEnum {
            field: "end_reason",
            value,
        }),
    }
}

/// A core audit kind as the proto enum.
pub fn audit_kind(kind: AuditKind) -> v1::AuditKind {
    match kind {
        AuditKind::LeaseAcquire => v1::AuditKind::LeaseAcquire,
        AuditKind::LeaseWait => v1::AuditKind::LeaseWait,
        AuditKind::LeaseRenew => v1::AuditKind::LeaseRenew,
        AuditKind::LeaseRelease => v1::AuditKind::LeaseRelease,
        AuditKind::LeaseExpire => v1::AuditKind::LeaseExpire,
        AuditKind::LeaseWaitCancel => v1::AuditKind::LeaseWaitCancel,
        AuditKind::ForceRelease => v1::AuditKind::ForceRelease,
        AuditKind::LockDelaySet => v1::AuditKind::LockDelaySet,
        AuditKind::LockDelayClear => v1::AuditKind::LockDelayClear,
        AuditKind::Restore => v1::AuditKind::Restore,
    }
}

/// A proto `AuditKind` number as the core's; UNSPECIFIED is refused.
pub fn audit_kind_from(value: i32) -> Result<AuditKind, ConvertError> {
    const FIELD: &str = "kind";
    match v1::AuditKind::try_from(value) {
        Ok(v1::AuditKind::LeaseAcquire) => Ok(AuditKind::LeaseAcquire),
        Ok(v1::AuditKind::LeaseWait) => Ok(AuditKind::LeaseWait),
        Ok(v1::AuditKind::LeaseRenew) => Ok(AuditKind::LeaseRenew),
        Ok(v1::AuditKind::LeaseRelease) => Ok(AuditKind::LeaseRelease),
        Ok(v1::AuditKind::LeaseExpire) => Ok(AuditKind::LeaseExpire),
        Ok(v1::AuditKind::LeaseWaitCancel) => Ok(AuditKind::LeaseWaitCancel),
        Ok(v1::AuditKind::ForceRelease) => Ok(AuditKind::ForceRelease),
        Ok(v1::AuditKind::LockDelaySet) => Ok(AuditKind::LockDelaySet),
        Ok(v1::AuditKind::LockDelayClear) => Ok(AuditKind::LockDelayClear),
        Ok(v1::AuditKind::Restore) => Ok(AuditKind::Restore),
        Ok(v1::AuditKind::Unspecified) => Err(ConvertError::Unspecified { field: FIELD }),
        Err(_) => Err(ConvertError::UnknownEnum {
            field: FIELD,
            value,
        }),
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The gRPC status code of each reason (spec/requirements.md, TN-ERR-001).
pub fn grpc_code(reason: Reason) -> Code {
    match reason {
        Reason::InvalidRequest | Reason::InvalidTtl => Code::InvalidArgument,
        Reason::OwnerTokenRequired | Reason::OwnerTokenMismatch => Code::Unauthenticated,
        Reason::Forbidden => Code::PermissionDenied,
        Reason::LeaseNotFound => Code::NotFound,
        Reason::LockHeld | Reason::LockDelayed => Code::Aborted,
        Reason::LeaseNotActive
        | Reason::LeaseExpired
        | Reason::OwnerMismatch
        | Reason::StaleFencingToken
        | Reason::LockModeConflict => Code::FailedPrecondition,
        Reason::RequestIdReused => Code::AlreadyExists,
        Reason::WaitTimeout => Code::DeadlineExceeded,
        Reason::TooManyWaiters | Reason::TooManyLocks | Reason::RateLimited => {
            Code::ResourceExhausted
        }
        Reason::NotLeader | Reason::Unavailable => Code::Unavailable,
        Reason::Internal => Code::Internal,
    }
}

/// A failed call: the reason's gRPC code, `message` for people, the reason
/// in the `tenure-reason` metadata entry and in a `google.rpc.ErrorInfo`
/// (domain `tenure.dev`) in the status details, and the leader's address in
/// `tenure-leader` when `leader` is known. A leader address that is not
/// valid ASCII metadata is left out of the metadata (it stays in the
/// `ErrorInfo`).
pub fn status(reason: Reason, message: impl Into<String>, leader: Option<&str>) -> tonic::Status {
    let code = grpc_code(reason);
    let message = message.into();

    let mut metadata = MetadataMap::new();
    metadata.insert(REASON_METADATA, MetadataValue::from_static(reason.as_str()));
    let mut info = rpc::ErrorInfo {
        reason: reason.as_str().to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: Default::default(),
    };
    if let Some(leader) = leader.filter(|l| !l.is_empty()) {
        set_leader(&mut metadata, leader);
        info.metadata
            .insert(LEADER_INFO_KEY.to_owned(), leader.to_owned());
    }

    let details = rpc::Status {
        code: i32::from(code),
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: rpc::ERROR_INFO_TYPE_URL.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details_and_metadata(
        code,
        message,
        Bytes::from(details.encode_to_vec()),
        metadata,
    )
}

/// Puts the leader's address in the `tenure-leader` entry of `metadata`
/// (of an error, or of a successful response for smart clients). Returns
/// false, and changes nothing, if the address is not valid ASCII metadata.
pub fn set_leader(metadata: &mut MetadataMap, leader: &str) -> bool {
    match MetadataValue::try_from(leader) {
        Ok(value) => {
            metadata.insert(LEADER_METADATA, value);
            true
        }
        Err(_) => false,
    }
}

/// A refusal of the lease table as a gRPC status; see [`status`].
pub fn error_status(err: &Error, leader: Option<&str>) -> tonic::Status {
    status(err.reason(), err.to_string(), leader)
}

/// The Tenure `ErrorInfo` in a status's details, if there is one.
pub fn error_info(status: &tonic::Status) -> Option<rpc::ErrorInfo> {
    let details = rpc::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|any| any.type_url == rpc::ERROR_INFO_TYPE_URL)
        .filter_map(|any| rpc::ErrorInfo::decode(any.value.as_slice()).ok())
        .find(|info| info.domain == ERROR_DOMAIN)
}

/// The stable reason of a failed call: from the `tenure-reason` metadata
/// entry, else from the `ErrorInfo` in the details. `None` when the status
/// did not come from Tenure (a transport error, a proxy, a deadline the
/// client set itself).
pub fn reason_of(status: &tonic::Status) -> Option<Reason> {
    let from_metadata = status
        .metadata()
        .get(REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(Reason::parse);
    from_metadata.or_else(|| error_info(status).and_then(|info| Reason::parse(&info.reason)))
}

/// The leader's address a failed call names, if any: from the
/// `tenure-leader` metadata entry, else from the `ErrorInfo`.
pub fn leader_of(status: &tonic::Status) -> Option<String> {
    let from_metadata = status
        .metadata()
        .get(LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    from_metadata
        .or_else(|| error_info(status).and_then(|mut info| info.metadata.remove(LEADER_INFO_KEY)))
}

/// The table's limits, as the API shows them.
pub fn limits(c: &tenure_core::TableConfig) -> v1::Limits {
    v1::Limits {
        ttl_min_ms: c.min_ttl_ms,
        ttl_max_ms: c.max_ttl_ms,
        max_wait_timeout_ms: c.max_wait_timeout_ms,
        lock_delay_ms: c.lock_delay_ms,
        max_waiters_per_lock: c.max_waiters_per_lock,
        max_locks_per_tenant: c.max_locks_per_tenant,
        max_tenants: c.max_tenants,
        request_retention_entries: c.request_retention_entries,
        request_retention_count: c.request_retention_count,
        lease_retention_entries: c.lease_retention_entries,
        lease_retention_count: c.lease_retention_count,
    }
}

/// The limits an API answer shows, as a table configuration.
pub fn table_config(l: &v1::Limits) -> tenure_core::TableConfig {
    tenure_core::TableConfig {
        min_ttl_ms: l.ttl_min_ms,
        max_ttl_ms: l.ttl_max_ms,
        max_wait_timeout_ms: l.max_wait_timeout_ms,
        lock_delay_ms: l.lock_delay_ms,
        max_waiters_per_lock: l.max_waiters_per_lock,
        max_locks_per_tenant: l.max_locks_per_tenant,
        max_tenants: l.max_tenants,
        request_retention_entries: l.request_retention_entries,
        request_retention_count: l.request_retention_count,
        lease_retention_entries: l.lease_retention_entries,
        lease_retention_count: l.lease_retention_count,
    }
}

/// `current` with the fields a Configure request gives replaced; the
/// result is checked when it is applied.
pub fn configure(
    current: &tenure_core::TableConfig,
    req: &v1::ConfigureRequest,
) -> tenure_core::TableConfig {
    let c = current;
    tenure_core::TableConfig {
        min_ttl_ms: req.ttl_min_ms.unwrap_or(c.min_ttl_ms),
        max_ttl_ms: req.ttl_max_ms.unwrap_or(c.max_ttl_ms),
        max_wait_timeout_ms: req.max_wait_timeout_ms.unwrap_or(c.max_wait_timeout_ms),
        lock_delay_ms: req.lock_delay_ms.unwrap_or(c.lock_delay_ms),
        max_waiters_per_lock: req.max_waiters_per_lock.unwrap_or(c.max_waiters_per_lock),
        max_locks_per_tenant: req.max_locks_per_tenant.unwrap_or(c.max_locks_per_tenant),
        max_tenants: req.max_tenants.unwrap_or(c.max_tenants),
        request_retention_entries: req
            .request_retention_entries
            .unwrap_or(c.request_retention_entries),
        request_retention_count: req
            .request_retention_count
            .unwrap_or(c.request_retention_count),
        lease_retention_entries: req
            .lease_retention_entries
            .unwrap_or(c.lease_retention_entries),
        lease_retention_count: req.lease_retention_count.unwrap_or(c.lease_retention_count),
    }
}
