//! With an auth file: bearer tokens checked against Argon2 hashes, owners
//! bound to principals, tenants and the admin role enforced (LS-AUTH-001).

mod common;

use std::collections::BTreeMap;

use common::{config, listener, start_with};
use tenure_core::Reason;
use tenure_proto::convert::reason_of;
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tenure_proto::v1::lock_client::LockClient;
use tenure_raft::SimDisk;
use tenure_server::ClusterState;

fn bearer<T>(token: Option<&str>, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    r
}

fn acquire(tenant: &str, owner: &str, rid: &str) -> v1::AcquireRequest {
    v1::AcquireRequest {
        tenant_id: tenant.into(),
        lock_key: "k".into(),
        owner_id: owner.into(),
        request_id: rid.into(),
        ttl_ms: 10_000,
        wait_timeout_ms: 0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_auth_001_tokens_principals_tenants_and_the_admin_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let ops = tenure_server::auth::hash_token("ops-secret").unwrap();
    let worker = tenure_server::auth::hash_token("worker-secret").unwrap();
    std::fs::write(
        &file,
        format!(
            "[[principal]]\nname = \"ops\"\ntoken_hash = \"{ops}\"\nroles = [\"admin\"]\ntenants = [\"*\"]\n\n\
             [[principal]]\nname = \"worker\"\ntoken_hash = \"{worker}\"\ntenants = [\"billing\"]\n"
        ),
    )
    .unwrap();
    let (l, addr) = listener().await;
    let members = BTreeMap::from([(1, addr.clone())]);
    let mut c = config(1, &addr, &members, ClusterState::New);
    c.auth_file = Some(file);
    let node = start_with(c, SimDisk::new(), l).await;
    node.wait_for_leader(common::WAIT).await.expect("a leader");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut lock = LockClient::new(channel.clone());
    let mut admin = AdminClient::new(channel);
    let reason =
        |r: Result<tonic::Response<v1::Lease>, tonic::Status>| reason_of(&r.expect_err("refused"));

    // No token, a wrong token: no identity.
    assert_eq!(
        reason(
            lock.acquire(bearer(None, acquire("billing", "", "r0")))
                .await
        ),
        Some(Reason::OwnerTokenRequired)
    );
    assert_eq!(
        reason(
            lock.acquire(bearer(Some("guess"), acquire("billing", "", "r0")))
                .await
        ),
        Some(Reason::OwnerTokenRequired)
    );
    // The owner is the principal: another name in the body is refused.
    assert_eq!(
        reason(
            lock.acquire(bearer(
                Some("worker-secret"),
                acquire("billing", "ops", "r1")
            ))
            .await
        ),
        Some(Reason::OwnerTokenMismatch)
    );
    // A tenant the principal may not use.
    assert_eq!(
        reason(
            lock.acquire(bearer(Some("worker-secret"), acquire("other", "", "r2")))
                .await
        ),
        Some(Reason::Forbidden)
    );
    let lease = lock
        .acquire(bearer(Some("worker-secret"), acquire("billing", "", "r3")))
        .await
        .expect("granted")
        .into_inner();
    assert_eq!(lease.owner_id, "worker");

    // Force-release and membership need the admin role.
    let force = |token| {
        bearer(
            token,
            v1::ForceReleaseRequest {
                tenant_id: "billing".into(),
                lock_key: "k".into(),
                reason: "test".into(),
                lease_id: String::new(),
            },
        )
    };
    let refused = admin
        .force_release(force(Some("worker-secret")))
        .await
        .expect_err("not an admin");
    assert_eq!(reason_of(&refused), Some(Reason::Forbidden));
    let added = admin
        .add_node(bearer(
            Some("worker-secret"),
            v1::AddNodeRequest {
                node_id: 9,
                address: "x:1".into(),
            },
        ))
        .await;
    assert_eq!(
        reason_of(&added.expect_err("not an admin")),
        Some(Reason::Forbidden)
    );
    let freed = admin
        .force_release(force(Some("ops-secret")))
        .await
        .expect("an admin may")
        .into_inner();
    assert!(!freed.held);
    node.kill().await;
}
