//! The proto conversions and the error model (TN-ERR-001, TN-ID-001,
//! LS-AUTH-001 at the edge).

use prost::Message as _;
use tenure_core::{
    Acquire, AuditEvent, AuditKind, EndReason, Error, ForceRelease, Holder, LeaseId, LeaseState,
    LeaseView, LockView, Mode, Reason, Release, Renew,
};
use tenure_proto::convert::{self, ConvertError};
use tenure_proto::{FILE_DESCRIPTOR_SET, rpc, v1};
use tonic::Code;

const LEADER: &str = "http://10.0.0.2:7401";

fn view(state: LeaseState, ended: Option<EndReason>) -> LeaseView {
    LeaseView {
        id: LeaseId::from_index(42),
        tenant: "acme".into(),
        key: "jobs/nightly".into(),
        owner: "svc-a".into(),
        ttl_ms: 15_000,
        state,
        token: 7,
        version: 3,
        wait_timeout_ms: 2_000,
        ended,
        mode: Mode::Exclusive,
    }
}

/// The table of TN-ERR-001, written out once more by hand.
fn expected_code(reason: Reason) -> Code {
    match reason.as_str() {
        "INVALID_REQUEST" | "INVALID_TTL" => Code::InvalidArgument,
        "OWNER_TOKEN_REQUIRED" | "OWNER_TOKEN_MISMATCH" => Code::Unauthenticated,
        "FORBIDDEN" => Code::PermissionDenied,
        "LEASE_NOT_FOUND" => Code::NotFound,
        "LOCK_HELD" | "LOCK_DELAYED" => Code::Aborted,
        "LEASE_NOT_ACTIVE"
        | "LEASE_EXPIRED"
        | "OWNER_MISMATCH"
        | "STALE_FENCING_TOKEN"
        | "LOCK_MODE_CONFLICT" => Code::FailedPrecondition,
        "REQUEST_ID_REUSED" => Code::AlreadyExists,
        "WAIT_TIMEOUT" => Code::DeadlineExceeded,
        "TOO_MANY_WAITERS" | "TOO_MANY_LOCKS" | "RATE_LIMITED" => Code::ResourceExhausted,
        "NOT_LEADER" | "UNAVAILABLE" => Code::Unavailable,
        "INTERNAL" => Code::Internal,
        other => panic!("reason {other} is missing from the table"),
    }
}

#[test]
fn tn_err_001_every_reason_has_a_grpc_code_and_round_trips() {
    for reason in Reason::ALL {
        assert_eq!(
            convert::grpc_code(reason),
            expected_code(reason),
            "{reason}"
        );

        let status = convert::status(reason, format!("because {reason}"), Some(LEADER));
        assert_eq!(status.code(), expected_code(reason), "{reason}");
        assert_eq!(status.message(), format!("because {reason}"));
        assert_eq!(convert::reason_of(&status), Some(reason));
        assert_eq!(convert::leader_of(&status).as_deref(), Some(LEADER));
        assert_eq!(
            status
                .metadata()
                .get("tenure-reason")
                .and_then(|v| v.to_str().ok()),
            Some(reason.as_str())
        );
        assert_eq!(
            status
                .metadata()
                .get("tenure-leader")
                .and_then(|v| v.to_str().ok()),
            Some(LEADER)
        );

        // The google.rpc.ErrorInfo in the details says the same.
        let info = convert::error_info(&status).expect("ErrorInfo in the details");
        assert_eq!(info.reason, reason.as_str());
        assert_eq!(info.domain, "tenure.dev");
        assert_eq!(
            info.metadata.get("leader").map(String::as_str),
            Some(LEADER)
        );
        let details = rpc::Status::decode(status.details()).expect("google.rpc.Status");
        assert_eq!(details.code, i32::from(expected_code(reason)));
        assert_eq!(details.message, status.message());

        // Everything survives the trip through HTTP/2 headers and back.
        let response = status.into_http::<()>();
        let back = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(back.code(), expected_code(reason));
        assert_eq!(convert::reason_of(&back), Some(reason));
        assert_eq!(convert::leader_of(&back).as_deref(), Some(LEADER));
        assert_eq!(
            convert::error_info(&back).map(|i| i.reason),
            Some(reason.as_str().to_owned())
        );
    }
}

#[test]
fn tn_err_001_status_without_a_leader_has_no_leader_hint() {
    let status = convert::status(Reason::LockHeld, "held", None);
    assert_eq!(convert::reason_of(&status), Some(Reason::LockHeld));
    assert_eq!(convert::leader_of(&status), None);
    assert!(status.metadata().get("tenure-leader").is_none());
    let status = convert::status(Reason::NotLeader, "no leader", Some(""));
    assert_eq!(convert::leader_of(&status), None);
}

#[test]
fn tn_err_001_reason_is_read_from_the_details_when_metadata_is_stripped() {
    let full = convert::status(Reason::LeaseExpired, "expired", Some(LEADER));
    // A proxy that drops custom metadata but keeps grpc-status-details-bin.
    let bare =
        tonic::Status::with_details(full.code(), full.message(), full.details().to_vec().into());
    assert_eq!(convert::reason_of(&bare), Some(Reason::LeaseExpired));
    assert_eq!(convert::leader_of(&bare).as_deref(), Some(LEADER));
}

#[test]
fn tn_err_001_foreign_statuses_have_no_reason() {
    assert_eq!(
        convert::reason_of(&tonic::Status::unavailable("connection refused")),
        None
    );
    let mut forged = tonic::Status::aborted("x");
    forged.metadata_mut().insert(
        "tenure-reason",
        tonic::metadata::MetadataValue::from_static("NO_SUCH"),
    );
    assert_eq!(convert::reason_of(&forged), None);
}

#[test]
fn tn_err_001_a_leader_that_is_not_ascii_metadata_stays_in_the_error_info() {
    let status = convert::status(Reason::NotLeader, "go there", Some("node\n2"));
    assert!(status.metadata().get("tenure-leader").is_none());
    assert_eq!(convert::leader_of(&status).as_deref(), Some("node\n2"));
}

#[test]
fn tn_err_001_core_errors_keep_their_reason_and_text() {
    let err = Error::LeaseExpired(LeaseId::from_index(9));
    let status = convert::error_status(&err, None);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(convert::reason_of(&status), Some(Reason::LeaseExpired));
    assert_eq!(status.message(), err.to_string());
}

#[test]
fn tn_id_001_a_malformed_lease_id_is_refused_as_invalid_request() {
    for bad in [
        "",
        "42",
        "000000000000002A",
        "000000000000002g",
        "0000000000000002a",
        " 000000000000002a",
        "../../etc/passwd",
    ] {
        let renew = v1::RenewRequest {
            tenant_id: "acme".into(),
            lease_id: bad.into(),
            request_id: "r1".into(),
            ttl_ms: 1_000,
            ..Default::default()
        };
        let err = convert::renew(&renew, "svc-a").expect_err(bad);
        assert!(
            matches!(
                err,
                ConvertError::InvalidLeaseId {
                    field: "lease_id",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.reason(), Reason::InvalidRequest);
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(convert::reason_of(&status), Some(Reason::InvalidRequest));

        let release = v1::ReleaseRequest {
            tenant_id: "acme".into(),
            lease_id: bad.into(),
            request_id: "r2".into(),
            ..Default::default()
        };
        assert_eq!(
            convert::release(&release, "svc-a").map_err(|e| e.reason()),
            Err(Reason::InvalidRequest),
            "{bad:?}"
        );
        let keep_alive = v1::KeepAliveRequest {
            tenant_id: "acme".into(),
            lease_id: bad.into(),
            ..Default::default()
        };
        assert_eq!(
            convert::keep_alive(&keep_alive, "svc-a").map_err(|e| e.reason()),
            Err(Reason::InvalidRequest),
            "{bad:?}"
        );
        assert!(convert::lease_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn tn_id_001_a_malformed_lease_id_in_force_release_is_refused_but_empty_means_any_holder() {
    let mut req = v1::ForceReleaseRequest {
        tenant_id: "acme".into(),
        lock_key: "jobs/nightly".into(),
        reason: "stuck job".into(),
        lease_id: "nope".into(),
    };
    assert_eq!(
        convert::force_release(&req, "ops").map_err(|e| e.reason()),
        Err(Reason::InvalidRequest)
    );
    req.lease_id.clear();
    let c = convert::force_release(&req, "ops").expect("valid");
    assert_eq!(c.lease_id, None);
    assert_eq!(c.actor, "ops");
}

#[test]
fn ls_auth_001_the_owner_is_the_authenticated_caller() {
    let mut req = v1::AcquireRequest {
        tenant_id: "acme".into(),
        lock_key: "k".into(),
        owner_id: String::new(),
        request_id: "r1".into(),
        ttl_ms: 5_000,
        wait_timeout_ms: 0,
        ..Default::default()
    };
    assert_eq!(convert::acquire(&req, "svc-a").expect("ok").owner, "svc-a");
    req.owner_id = "svc-a".into();
    assert_eq!(convert::acquire(&req, "svc-a").expect("ok").owner, "svc-a");
    req.owner_id = "svc-b".into();
    let err = convert::acquire(&req, "svc-a").expect_err("someone else");
    assert_eq!(err.reason(), Reason::OwnerTokenMismatch);
    assert_eq!(tonic::Status::from(err).code(), Code::Unauthenticated);
    let err = convert::acquire(&req, "").expect_err("nobody");
    assert_eq!(err.reason(), Reason::OwnerTokenRequired);
    let fr = v1::ForceReleaseRequest {
        tenant_id: "acme".into(),
        lock_key: "k".into(),
        reason: "r".into(),
        lease_id: String::new(),
    };
    assert_eq!(
        convert::force_release(&fr, "").map_err(|e| e.reason()),
        Err(Reason::OwnerTokenRequired)
    );
}

#[test]
fn requests_round_trip_through_the_proto() {
    let acquire = Acquire {
        tenant: "acme".into(),
        key: "jobs/nightly".into(),
        owner: "svc-a".into(),
        request_id: "req-1".into(),
        ttl_ms: 30_000,
        wait_timeout_ms: 5_000,
    };
    assert_eq!(
        convert::acquire(&convert::acquire_request(&acquire), "svc-a"),
        Ok(acquire)
    );

    let renew = Renew {
        tenant: "acme".into(),
        lease_id: LeaseId::from_index(0x1234_5678_9abc_def0),
        owner: "svc-a".into(),
        request_id: "req-2".into(),
        ttl_ms: 20_000,
    };
    let wire = convert::renew_request(&renew);
    assert_eq!(wire.lease_id, "123456789abcdef0");
    assert_eq!(
        convert::renew(&wire, "svc-a"),
        Ok(convert::RenewCall::Change(renew.clone()))
    );
    // TTL 0 keeps the TTL: a keep-alive, never a logged command.
    let keep = v1::RenewRequest {
        ttl_ms: 0,
        ..convert::renew_request(&renew)
    };
    assert_eq!(
        convert::renew(&keep, "svc-a"),
        Ok(convert::RenewCall::Keep(convert::KeepAliveTarget {
            tenant: "acme".into(),
            lease_id: renew.lease_id,
            owner: "svc-a".into(),
        }))
    );

    let release = Release {
        tenant: "acme".into(),
        lease_id: LeaseId::from_index(u64::MAX),
        owner: "svc-a".into(),
        request_id: "req-3".into(),
    };
    assert_eq!(
        convert::release(&convert::release_request(&release), "svc-a"),
        Ok(release)
    );

    for lease_id in [None, Some(LeaseId::from_index(1))] {
        let force = ForceRelease {
            tenant: "acme".into(),
            key: "jobs/nightly".into(),
            actor: "ops".into(),
            reason: "host died".into(),
            lease_id,
        };
        let wire = convert::force_release_request(&force);
        assert_eq!(convert::force_release(&wire, "ops"), Ok(force));
    }

    let ka = v1::KeepAliveRequest {
        tenant_id: "acme".into(),
        lease_id: "000000000000002a".into(),
        owner_id: String::new(),
        client_seq: 5,
    };
    let target = convert::keep_alive(&ka, "svc-a").expect("valid");
    assert_eq!(target.lease_id, LeaseId::from_index(42));
    assert_eq!(target.owner, "svc-a");
    assert_eq!(target.tenant, "acme");
}

#[test]
fn ttl_and_wait_pass_through_for_the_core_to_judge() {
    let req = v1::AcquireRequest {
        tenant_id: String::new(),
        lock_key: String::new(),
        owner_id: String::new(),
        request_id: String::new(),
        ttl_ms: u64::MAX,
        wait_timeout_ms: u64::MAX,
        ..Default::default()
    };
    let c = convert::acquire(&req, "svc-a").expect("the core validates, not the conversion");
    assert_eq!((c.ttl_ms, c.wait_timeout_ms), (u64::MAX, u64::MAX));
}

#[test]
fn leases_round_trip_in_every_state() {
    let cases = [
        (LeaseState::Waiting, None),
        (LeaseState::Active, None),
        (LeaseState::Released, Some(EndReason::Released)),
        (LeaseState::Released, Some(EndReason::ForceReleased)),
        (LeaseState::Released, Some(EndReason::WaitTimedOut)),
        (LeaseState::Released, Some(EndReason::WaitAbandoned)),
        (LeaseState::Expired, Some(EndReason::Expired)),
    ];
    for (state, ended) in cases {
        let v = view(state, ended);
        let wire = convert::lease(&v, 1_234);
        assert_eq!(wire.lease_id, "000000000000002a");
        assert_eq!(wire.expires_in_ms, 1_234);
        assert_eq!(wire.fencing_token, 7);
        assert_eq!(wire.state(), convert::lease_state(state));
        // And through the bytes, as a client would see it.
        let decoded = v1::Lease::decode(wire.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(convert::lease_view(&decoded), Ok(v));
    }
}

#[test]
fn enum_mappings_are_one_to_one() {
    for state in [
        LeaseState::Waiting,
        LeaseState::Active,
        LeaseState::Released,
        LeaseState::Expired,
    ] {
        let wire = convert::lease_state(state);
        assert_eq!(
            wire.as_str_name(),
            format!("LEASE_STATE_{}", state.as_str())
        );
        assert_eq!(convert::lease_state_from(wire as i32), Ok(state));
    }
    let kinds = [
        AuditKind::LeaseAcquire,
        AuditKind::LeaseWait,
        AuditKind::LeaseRenew,
        AuditKind::LeaseRelease,
        AuditKind::LeaseExpire,
        AuditKind::LeaseWaitCancel,
        AuditKind::ForceRelease,
        AuditKind::LockDelaySet,
        AuditKind::LockDelayClear,
    ];
    for kind in kinds {
        let wire = convert::audit_kind(kind);
        assert_eq!(wire.as_str_name(), format!("AUDIT_KIND_{}", kind.as_str()));
        assert_eq!(convert::audit_kind_from(wire as i32), Ok(kind));
    }
    let ends = [
        None,
        Some(EndReason::Released),
        Some(EndReason::Expired),
        Some(EndReason::ForceReleased),
        Some(EndReason::WaitTimedOut),
        Some(EndReason::WaitAbandoned),
    ];
    for end in ends {
        assert_eq!(
            convert::end_reason_from(convert::end_reason(end) as i32),
            Ok(end)
        );
    }
}

#[test]
fn unknown_and_unspecified_enum_values_are_refused() {
    assert_eq!(
        convert::lease_state_from(0),
        Err(ConvertError::Unspecified { field: "state" })
    );
    assert_eq!(
        convert::lease_state_from(99),
        Err(ConvertError::UnknownEnum {
            field: "state",
            value: 99
        })
    );
    assert_eq!(
        convert::audit_kind_from(0),
        Err(ConvertError::Unspecified { field: "kind" })
    );
    assert_eq!(
        convert::audit_kind_from(-1),
        Err(ConvertError::UnknownEnum {
            field: "kind",
            value: -1
        })
    );
    assert_eq!(
        convert::end_reason_from(6),
        Err(ConvertError::UnknownEnum {
            field: "end_reason",
            value: 6
        })
    );
    let mut wire = convert::lease(&view(LeaseState::Active, None), 0);
    wire.state = 17;
    assert_eq!(
        convert::lease_view(&wire).map_err(|e| e.reason()),
        Err(Reason::InvalidRequest)
    );
}

#[test]
fn locks_round_trip_held_and_free() {
    let held = LockView {
        tenant: "acme".into(),
        key: "jobs/nightly".into(),
        active: Some(view(LeaseState::Active, None)),
        holders: vec![view(LeaseState::Active, None)],
        limit: 0,
        last_token: 7,
        waiters: 2,
        delayed: false,
    };
    let wire = convert::lock_state(&held, |_| 900);
    assert!(wire.held);
    assert_eq!(
        wire.active_lease.as_ref().map(|l| l.expires_in_ms),
        Some(900)
    );
    assert_eq!(wire.last_fencing_token, 7);
    assert_eq!(wire.waiters, 2);
    assert_eq!(convert::lock_view(&wire), Ok(held));

    let free = LockView {
        tenant: "acme".into(),
        key: "jobs/other".into(),
        active: None,
        holders: Vec::new(),
        limit: 0,
        last_token: 12,
        waiters: 1,
        delayed: true,
    };
    let wire = convert::lock_state(&free, |_| 900);
    assert!(!wire.held);
    assert!(wire.lock_delayed);
    assert!(wire.active_lease.is_none());
    assert_eq!(convert::lock_view(&wire), Ok(free));

    // A semaphore of 3 with two holders: each with its own time left.
    let holder = |i: u64, token: u64| LeaseView {
        id: LeaseId::from_index(i),
        token,
        mode: Mode::Semaphore(3),
        ..view(LeaseState::Active, None)
    };
    let sem = LockView {
        tenant: "acme".into(),
        key: "pool".into(),
        active: Some(holder(40, 5)),
        holders: vec![holder(40, 5), holder(41, 6)],
        limit: 3,
        last_token: 6,
        waiters: 0,
        delayed: false,
    };
    let wire = convert::lock_state(&sem, |id| id.index() * 10);
    assert_eq!(wire.limit, 3);
    assert_eq!(wire.holders.len(), 2);
    assert_eq!(wire.holders[1].expires_in_ms, 410);
    assert_eq!(wire.holders[1].mode(), v1::LockMode::Semaphore);
    assert_eq!(wire.holders[1].limit, 3);
    assert_eq!(convert::lock_view(&wire), Ok(sem));
}

#[test]
fn tn_mode_002_modes_and_limits_travel_and_bad_pairs_are_refused() {
    let mut req = v1::AcquireRequest {
        tenant_id: "acme".into(),
        lock_key: "k".into(),
        request_id: "r1".into(),
        ttl_ms: 5_000,
        ..Default::default()
    };
    assert_eq!(convert::acquire_mode(&req), Ok(Mode::Exclusive));
    req.set_mode(v1::LockMode::Shared);
    assert_eq!(convert::acquire_mode(&req), Ok(Mode::Shared));
    req.set_mode(v1::LockMode::Semaphore);
    req.limit = 8;
    assert_eq!(convert::acquire_mode(&req), Ok(Mode::Semaphore(8)));
    // A semaphore without a limit, a limit without a semaphore, a mode
    // this build does not know: INVALID_REQUEST.
    for (mode, limit) in [(2, 0), (0, 3), (1, 3), (9, 0)] {
        req.mode = mode;
        req.limit = limit;
        assert_eq!(
            convert::acquire_mode(&req).map_err(|e| e.reason()),
            Err(Reason::InvalidRequest),
            "mode {mode} limit {limit}"
        );
    }
    for mode in [
        Mode::Exclusive,
        Mode::Shared,
        Mode::Semaphore(1),
        Mode::Semaphore(9),
    ] {
        let c = convert::acquire(&req, "svc").expect("valid");
        let wire = convert::acquire_request_in(&c, mode);
        assert_eq!(convert::acquire_mode(&wire), Ok(mode));
        let l = LeaseView {
            mode,
            ..view(LeaseState::Active, None)
        };
        assert_eq!(convert::lease_view(&convert::lease(&l, 0)), Ok(l));
    }
}

#[test]
fn a_lock_state_that_contradicts_itself_is_refused() {
    let mut wire = v1::LockState {
        tenant_id: "acme".into(),
        lock_key: "k".into(),
        held: true,
        ..Default::default()
    };
    assert!(matches!(
        convert::lock_view(&wire),
        Err(ConvertError::Malformed { .. })
    ));
    wire.held = false;
    wire.active_lease = Some(convert::lease(&view(LeaseState::Active, None), 0));
    assert!(matches!(
        convert::lock_view(&wire),
        Err(ConvertError::Malformed { .. })
    ));
}

#[test]
fn audit_events_round_trip_as_watch_events() {
    let full = AuditEvent {
        seq: 17,
        index: 230,
        at_ms: 1_700_000_000_000,
        kind: AuditKind::ForceRelease,
        tenant: "acme".into(),
        key: "jobs/nightly".into(),
        lease_id: Some(LeaseId::from_index(229)),
        owner: Some("svc-a".into()),
        token: 7,
        actor: "ops".into(),
        detail: Some("host died".into()),
        mode: Mode::Shared,
        holders: vec![Holder {
            lease_id: LeaseId::from_index(228),
            owner: "svc-b".into(),
            token: 6,
            mode: Mode::Shared,
        }],
    };
    let wire = convert::watch_event(&full);
    assert_eq!(wire.sequence, 17);
    assert_eq!(wire.log_index, 230);
    assert_eq!(wire.kind(), v1::AuditKind::ForceRelease);
    assert_eq!(wire.lease_id, "00000000000000e5");
    assert!(!wire.gap_before);
    assert_eq!(convert::audit_event(&wire), Ok(full));

    let bare = AuditEvent {
        seq: 18,
        index: 231,
        at_ms: 0,
        kind: AuditKind::LockDelayClear,
        tenant: "acme".into(),
        key: "jobs/nightly".into(),
        lease_id: None,
        owner: None,
        token: 0,
        actor: "system".into(),
        detail: None,
        mode: Mode::Exclusive,
        holders: Vec::new(),
    };
    let wire = convert::watch_event(&bare);
    assert!(wire.lease_id.is_empty() && wire.owner_id.is_empty() && wire.detail.is_empty());
    assert_eq!(convert::audit_event(&wire), Ok(bare));
}

#[test]
fn keep_alive_answers_echo_the_request() {
    let req = v1::KeepAliveRequest {
        tenant_id: "acme".into(),
        lease_id: "000000000000002a".into(),
        owner_id: String::new(),
        client_seq: 99,
    };
    let ok = convert::keep_alive_alive(&req, &view(LeaseState::Active, None), 14_000);
    assert!(ok.alive);
    assert_eq!(
        (ok.ttl_ms, ok.expires_in_ms, ok.client_seq),
        (15_000, 14_000, 99)
    );
    assert!(ok.reason.is_empty());
    let lost = convert::keep_alive_lost(&req, Reason::LeaseExpired, "expired");
    assert!(!lost.alive);
    assert_eq!(lost.lease_id, req.lease_id);
    assert_eq!(lost.client_seq, 99);
    assert_eq!(Reason::parse(&lost.reason), Some(Reason::LeaseExpired));
}

#[test]
fn page_tokens_round_trip_and_refuse_forgeries() {
    assert_eq!(convert::page_after(""), Ok(None));
    for key in ["a", "jobs/nightly", "x y~z", "\u{e9}t\u{e9}"] {
        let token = convert::page_token(key);
        assert_eq!(
            convert::page_after(&token),
            Ok(Some(key.to_owned())),
            "{key:?}"
        );
    }
    for bad in ["abc", "zz", "6A", "ff"] {
        assert!(
            matches!(
                convert::page_after(bad),
                Err(ConvertError::InvalidPageToken(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_descriptor_set_describes_both_services() {
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("decodes");
    let file = set
        .file
        .iter()
        .find(|f| f.package() == "tenure.v1")
        .expect("tenure.v1 is in the set");
    let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
    assert_eq!(services, ["Lock", "Admin"]);
    let lock = &file.service[0];
    let methods: Vec<&str> = lock.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "Acquire",
            "Renew",
            "Release",
            "Get",
            "List",
            "KeepAlive",
            "KeepAliveMany",
            "Watch"
        ]
    );
    let admin = &file.service[1];
    let methods: Vec<&str> = admin.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "ForceRelease",
            "Status",
            "AddNode",
            "RemoveNode",
            "TransferLeader",
            "ExportSnapshot",
            "Backup",
            "ImportSnapshot",
            "Restore",
            "Configure"
        ]
    );
}
