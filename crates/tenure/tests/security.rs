//! Secure deployment over real processes of the built binary: a TLS
//! cluster made with `tenure certs init` and `tenure auth new-token` forms
//! and serves the CLI and tenure-client; a plaintext client is refused; the
//! Raft service answers member node certificates only; a client
//! certificate is an identity; wrong and garbage tokens are refused
//! cheaply; SIGHUP rotates tokens. Latencies are printed, never asserted.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tenure_client::{Client, ClientConfig, TlsConfig};
use tenure_raft::{Control, TcpConnector};
use tokio::time::Instant;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const LIVENESS: Duration = Duration::from_secs(20);

mod common;

use common::run as tenure;

/// A token and its auth file entry, from `tenure auth new-token --json`.
fn new_token(name: &str, roles: &str, tenants: &str) -> (String, String) {
    let (code, out, err) = tenure(&[
        "auth",
        "new-token",
        "--name",
        name,
        "--roles",
        roles,
        "--tenants",
        tenants,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    (
        v["token"].as_str().expect("token").to_owned(),
        v["toml"].as_str().expect("toml").to_owned(),
    )
}

struct TlsCluster {
    addrs: BTreeMap<u64, String>,
    members: String,
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Child>,
    auth: PathBuf,
    /// Each node's HTTP port, when it has one.
    http: BTreeMap<u64, String>,
}

impl TlsCluster {
    /// `n` nodes with certificates for `certs` nodes, serving TLS, taking
    /// client certificates, with the auth file `auth`.
    fn start(n: u64, certs: u64, auth: &str) -> TlsCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs_dir = dir.path().join("certs");
        let (code, _, err) = tenure(&[
            "certs",
            "init",
            "--out",
            &certs_dir.display().to_string(),
            "--nodes",
            &certs.to_string(),
        ]);
        assert_eq!(code, 0, "{err}");
        let auth_path = dir.path().join("auth.toml");
        std::fs::write(&auth_path, auth).expect("auth file");
        let (addrs, members) = common::free_members(n);
        let mut c = TlsCluster {
            addrs,
            members,
            dir,
            nodes: BTreeMap::new(),
            auth: auth_path,
            http: BTreeMap::new(),
        };
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn pem(&self, name: &str) -> PathBuf {
        self.certs().join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.certs().join(format!("{name}-key.pem"))
    }

    fn spawn(&mut self, id: u64) {
        let members = self.members.clone();
        self.spawn_with(id, &["--initial-cluster", &members]);
    }

    /// The same cluster, every node also serving an HTTP port.
    fn with_http(mut self) -> TlsCluster {
        self.http = common::free_members(self.addrs.len() as u64).0;
        let members = self.members.clone();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(mut child) = self.nodes.remove(&id) {
                let _ = child.kill();
                let _ = child.wait();
            }
            let http = self.http[&id].clone();
            self.spawn_with(id, &["--initial-cluster", &members, "--http-listen", &http]);
        }
        self
    }

    /// Starts node `id` on a free port, to be added with `cluster add`.
    fn spawn_joiner(&mut self, id: u64) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = l.local_addr().expect("address").to_string();
        drop(l);
        self.spawn_with(
            id,
            &["--listen", &addr, "--initial-cluster-state", "existing"],
        );
        self.addrs.insert(id, addr.clone());
        addr
    }

    fn spawn_with(&mut self, id: u64, args: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let node = format!("node-{id}");
        let child = Command::new(env!("CARGO_BIN_EXE_tenure"))
            .args(["serve", "--id", &id.to_string()])
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join(&node))
            .arg("--tls-cert")
            .arg(self.pem(&node))
            .arg("--tls-key")
            .arg(self.key(&node))
            .arg("--tls-ca")
            .arg(self.pem("ca"))
            .arg("--client-ca")
            .arg(self.pem("ca"))
            .arg("--auth-file")
            .arg(&self.auth)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tenure serve starts");
        self.nodes.insert(id, child);
    }

    fn endpoints(&self) -> String {
        self.addrs.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// The CLI against this cluster over TLS: `args` then the connection flags.
    fn cli(&self, args: &[&str], extra: &[&str]) -> (i32, String, String) {
        let ca = self.pem("ca").display().to_string();
        let endpoints = self.endpoints();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--endpoints", &endpoints, "--tls-ca", &ca]);
        all.extend(extra);
        tenure(&all)
    }

    fn client_tls(&self, name: Option<&str>) -> TlsConfig {
        TlsConfig::from_files(
            &self.pem("ca"),
            name.map(|n| self.pem(n)).as_deref(),
            name.map(|n| self.key(n)).as_deref(),
        )
        .expect("the PEM files read")
    }

    fn config(&self, tls: TlsConfig) -> ClientConfig {
        let mut config = ClientConfig::new(self.addrs.values().cloned(), "default", "ignored");
        config.tls = Some(tls);
        config
    }

    /// Waits until a status call with `token` names a leader.
    async fn leader(&self, token: &str) -> u64 {
        let config = self.config(self.client_tls(None)).with_token(token);
        let start = Instant::now();
        while start.elapsed() < LIVENESS {
            if let Ok(client) = Client::connect(config.clone()).await
                && let Ok(s) = client.status().await
                && let Some(leader) = s.leader_id
            {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader named over TLS");
    }

    /// Waits until every running node knows the cluster's `n` members: a
    /// node that knows no membership yet admits any node certificate of the
    /// CA (the leader adding it must reach it first).
    async fn members_known(&self, token: &str, n: usize) {
        let config = self.config(self.client_tls(None)).with_token(token);
        let start = Instant::now();
        for addr in self.addrs.values() {
            loop {
                if let Ok(client) = Client::connect(config.clone()).await
                    && let Ok(s) = client.status_of(addr).await
                    && s.members.len() == n
                {
                    break;
                }
                assert!(
                    start.elapsed() < LIVENESS,
                    "{addr} never learned the members"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    fn hangup(&self) {
        for child in self.nodes.values() {
            let ok = Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .expect("kill runs")
                .success();
            assert!(ok, "SIGHUP sent");
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for child in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Control call to the Raft service of `addr`, presenting `identity`
/// (a name of the certs directory) or no certificate.
async fn raft_call(c: &TlsCluster, addr: &str, identity: Option<&str>) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).expect("PEM");
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&c.pem("ca"))));
    if let Some(name) = identity {
        tls = tls.identity(Identity::from_pem(read(&c.pem(name)), read(&c.key(name))));
    }
    tenure_raft::control(&TcpConnector::with_tls(tls), addr, Control::Observe)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_tls_001_a_tls_cluster_forms_serves_the_cli_and_the_client_and_refuses_plaintext() {
    let (ops, ops_entry) = new_token("ops", "admin,writer,reader", "*");
    let c = TlsCluster::start(3, 3, &ops_entry);
    c.leader(&ops).await;

    // The CLI over TLS with a token: status, a lock, its release.
    let (code, out, err) = c.cli(&["cluster", "status", "--json"], &["--token", &ops]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"leader_id\""), "{out}");
    let (code, out, err) = c.cli(
        &["lock", "acquire", "jobs/tls", "--json"],
        &["--token", &ops],
    );
    assert_eq!(code, 0, "{err}");
    let lease: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(lease["owner_id"], "ops");
    assert_eq!(lease["fencing_token"], 1);
    let id = lease["lease_id"].as_str().expect("an id").to_owned();
    let (code, out, err) = c.cli(&["lock", "release", &id, "--json"], &["--token", &ops]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RELEASED"), "{out}");

    // tenure-client over TLS with a token: a guard, its fencing token.
    let client = Client::connect(c.config(c.client_tls(None)).with_token(&ops))
        .await
        .expect("connects over TLS");
    let guard = client
        .acquire("jobs/tls", Duration::from_secs(10))
        .await
        .expect("granted over TLS");
    assert_eq!(guard.fencing_token(), 2);
    guard.release().await.expect("released");

    // Plaintext is refused on every node: no TLS, no answer.
    for addr in c.addrs.values() {
        let config = ClientConfig::new([addr.clone()], "default", "ops").with_token(&ops);
        let mut config = config;
        config.call_timeout = Duration::from_secs(2);
        let plain = match Client::connect(config).await {
            Ok(client) => client.status().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(plain.is_err(), "a plaintext call to {addr} was answered");
    }
    // And the CLI without --tls-ca fails clearly.
    let (code, _, err) = tenure(&[
        "cluster",
        "status",
        "--endpoints",
        &c.endpoints(),
        "--token",
        &ops,
    ]);
    assert_eq!(code, 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_tls_002_the_raft_service_answers_member_node_certificates_only() {
    let (ops, ops_entry) = new_token("ops", "admin", "*");
    // Certificates for four nodes; three run, so node-4 names no member.
    let mut c = TlsCluster::start(3, 4, &ops_entry);
    c.leader(&ops).await;
    c.members_known(&ops, 3).await;
    for addr in c.addrs.values() {
        let none = raft_call(&c, addr, None).await.expect_err("no certificate");
        assert!(
            none.contains("Unauthenticated") || none.contains("members only"),
            "{none}"
        );
        let client = raft_call(&c, addr, Some("client"))
            .await
            .expect_err("a client certificate of the same CA");
        assert!(client.contains("names no node"), "{client}");
        let stranger = raft_call(&c, addr, Some("node-4"))
            .await
            .expect_err("a node certificate of a node that is not a member");
        assert!(stranger.contains("not a member"), "{stranger}");
        raft_call(&c, addr, Some("node-2"))
            .await
            .expect("a member's node certificate is admitted");
    }
    assert!(
        (1..=3).any(|id| c.log(id).contains("refused a call to the Raft service")),
        "refusals are logged"
    );
    // Node 4 joins: before it knows a membership it admits the leader's
    // node certificate; once added, the members admit its own.
    let addr = c.spawn_joiner(4);
    let (code, out, err) = c.cli(
        &["cluster", "add", "--id", "4", "--addr", &addr],
        &["--token", &ops],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains('4'), "{out}");
    for id in 1..=3 {
        raft_call(&c, &c.addrs[&id], Some("node-4"))
            .await
            .expect("a member now");
    }
    // Control between nodes runs over mutual TLS: hand leadership to node 4.
    let (code, out, err) = c.cli(
        &["cluster", "transfer-leader", "--to", "4"],
        &["--token", &ops],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node 4 leads"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_tls_003_a_client_certificate_is_the_principal_it_names() {
    let (ops, ops_entry) = new_token("ops", "admin,reader", "*");
    // "client" (the certificate's CN) has no token_hash: certificate only.
    let auth = format!(
        "{ops_entry}\n[[principal]]\nname = \"client\"\nroles = [\"writer\", \"reader\"]\ntenants = [\"default\"]\n"
    );
    let c = TlsCluster::start(3, 3, &auth);
    c.leader(&ops).await;
    // Through every node: the follower vouches for the certificate it saw.
    for (i, addr) in c.addrs.values().enumerate() {
        let mut config = c.config(c.client_tls(Some("client")));
        config.endpoints = vec![addr.clone()];
        let client = Client::connect(config).await.expect("connects");
        let key = format!("jobs/cert-{i}");
        let guard = client
            .acquire(&key, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("granted through {addr}: {e}"));
        let state = client.get(&key).await.expect("a reader may get");
        let holder = state.view.active.expect("held");
        assert_eq!(&*holder.owner, "client", "the certificate's name owns it");
        guard.release().await.expect("released");
        // The principal's tenants hold: another tenant is forbidden.
        let mut other = c.config(c.client_tls(Some("client")));
        other.tenant = "billing".into();
        let other = Client::connect(other).await.expect("connects");
        let Err(refused) = other.acquire("x", Duration::from_secs(10)).await else {
            panic!("granted in a tenant not its own");
        };
        assert_eq!(refused.reason(), tenure_client::Reason::Forbidden);
    }
    // A node certificate is no client's identity, and carries no token.
    let node_as_client = Client::connect(c.config(c.client_tls(Some("node-1"))))
        .await
        .expect("connects");
    let Err(refused) = node_as_client.acquire("y", Duration::from_secs(10)).await else {
        panic!("node-1 is no principal, yet was granted");
    };
    assert_eq!(refused.reason(), tenure_client::Reason::OwnerTokenRequired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_auth_004_wrong_and_garbage_tokens_are_refused_cheaply() {
    let (ops, ops_entry) = new_token("ops", "admin,writer,reader", "*");
    let (_, a) = new_token("svc-a", "writer", "default");
    let (_, b) = new_token("svc-b", "reader", "default");
    let c = TlsCluster::start(1, 1, &format!("{ops_entry}\n{a}\n{b}"));
    c.leader(&ops).await;
    let client_with = |token: &str| {
        let mut config = c.config(c.client_tls(None)).with_token(token);
        config.call_timeout = Duration::from_secs(5);
        Client::connect(config)
    };
    let valid = client_with(&ops).await.expect("connects");
    let garbage = client_with("garbage-not-a-token").await.expect("connects");
    // The right id, the wrong secret: one Argon2, then remembered.
    let wrong_id = ops.split('_').nth(1).expect("an id part");
    let wrong = client_with(&format!("tnr_{wrong_id}_{}", "0".repeat(64)))
        .await
        .expect("connects");
    let status = |client: &Client| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            let result = client.status().await;
            (start.elapsed(), result.map(|_| ()))
        }
    };
    let mut ok_times = Vec::new();
    let mut garbage_times = Vec::new();
    let mut wrong_times = Vec::new();
    for _ in 0..41 {
        let (t, r) = status(&valid).await;
        r.expect("the valid token is accepted");
        ok_times.push(t);
        let (t, r) = status(&garbage).await;
        let e = r.expect_err("garbage refused");
        assert_eq!(e.reason(), tenure_client::Reason::OwnerTokenRequired, "{e}");
        garbage_times.push(t);
        let (t, r) = status(&wrong).await;
        let e = r.expect_err("a wrong secret refused");
        assert!(
            matches!(
                e.reason(),
                tenure_client::Reason::OwnerTokenRequired | tenure_client::Reason::RateLimited
            ),
            "{e}"
        );
        wrong_times.push(t);
    }
    let (ok, garbage, wrong) = (median(ok_times), median(garbage_times), median(wrong_times));
    println!(
        "auth-latency: valid {:.3} ms, garbage {:.3} ms, wrong secret {:.3} ms (medians of 41, 3 principals loaded)",
        ok.as_secs_f64() * 1e3,
        garbage.as_secs_f64() * 1e3,
        wrong.as_secs_f64() * 1e3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_auth_005_sighup_rotates_tokens_and_a_broken_file_keeps_the_old_one() {
    let (old, old_entry) = new_token("ops", "admin,writer,reader", "*");
    let c = TlsCluster::start(1, 1, &old_entry);
    c.leader(&old).await;
    let works = |token: &str| {
        let config = c.config(c.client_tls(None)).with_token(token);
        async move {
            match Client::connect(config).await {
                Ok(client) => client.status().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    assert!(works(&old).await);
    // A guard kept alive with the old token, on an open keep-alive stream.
    let holder = Client::connect(c.config(c.client_tls(None)).with_token(&old))
        .await
        .expect("connects");
    let guard = holder
        .acquire("jobs/rotate", Duration::from_secs(10))
        .await
        .expect("granted");
    let (new, new_entry) = new_token("ops", "admin,writer,reader", "*");
    assert!(!works(&new).await, "not yet in the file");
    std::fs::write(&c.auth, &new_entry).expect("rewritten");
    c.hangup();
    let start = Instant::now();
    while !works(&new).await {
        assert!(start.elapsed() < LIVENESS, "the new token never took");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!works(&old).await, "the rotated-out token is refused");
    // The open stream checked its caller again: the guard is lost, and says why.
    if tokio::time::timeout(LIVENESS, guard.lost()).await.is_err() {
        panic!("the revoked guard is not lost; node log:\n{}", c.log(1));
    }
    let lost = guard.lost_reason().expect("a reason");
    assert_eq!(
        lost.reason,
        tenure_client::Reason::OwnerTokenRequired,
        "{lost:?}"
    );
    // A broken file: the node keeps the file in force and says why.
    std::fs::write(&c.auth, "[[principal]]\nname = \"x\"\nroles = [\"root\"]\n").expect("broken");
    c.hangup();
    let start = Instant::now();
    while !c.log(1).contains("auth file not reloaded") {
        assert!(
            start.elapsed() < LIVENESS,
            "the broken file was not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(works(&new).await, "the previous file stays in force");
}

#[test]
fn tn_tls_004_beyond_loopback_without_tls_a_node_refuses_to_start_and_names_the_flags() {
    let (code, _, err) = tenure(&[
        "serve",
        "--id",
        "1",
        "--listen",
        "0.0.0.0:0",
        "--initial-cluster",
        "1=127.0.0.1:1",
    ]);
    assert_ne!(code, 0);
    for flag in ["--tls-cert", "--tls-key", "--tls-ca"] {
        assert!(err.contains(flag), "{err}");
    }
    // Half a TLS configuration is refused too.
    let (code, _, err) = tenure(&[
        "serve",
        "--id",
        "1",
        "--initial-cluster",
        "1=127.0.0.1:1",
        "--tls-cert",
        "x.pem",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("all three"), "{err}");
}

#[test]
fn tn_tls_005_certs_init_makes_a_ca_node_and_client_certificates_and_new_token_an_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("certs").display().to_string();
    let (code, text, err) = tenure(&["certs", "init", "--out", &out, "--nodes", "5"]);
    assert_eq!(code, 0, "{err}");
    for name in ["ca", "node-1", "node-5", "client"] {
        assert!(text.contains(&format!("{name}.pem")), "{text}");
        assert!(text.contains(&format!("{name}-key.pem")), "{text}");
    }
    // It does not overwrite without --force.
    let (code, _, err) = tenure(&["certs", "init", "--out", &out, "--nodes", "5"]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    // Keys are the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("certs/node-1-key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    // new-token: a token with an id part, the entry with that id.
    let (code, text, err) = tenure(&["auth", "new-token", "--name", "svc", "--roles", "reader"]);
    assert_eq!(code, 0, "{err}");
    let token = text.lines().next().expect("the token first");
    assert!(token.starts_with("tnr_"), "{text}");
    let id = token.split('_').nth(1).expect("an id");
    assert!(text.contains(&format!("token_id = \"{id}\"")), "{text}");
    assert!(text.contains("roles = [\"reader\"]"), "{text}");
    let (code, _, err) = tenure(&["auth", "new-token", "--name", "svc", "--roles", "root"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown role"), "{err}");
}

#[test]
fn tn_tls_005_cluster_up_tls_starts_a_tls_cluster_with_an_auth_file() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_dir = dir.path().join("local");
    // Three free ports in a row, as the script numbers them.
    let base = (0..50)
        .map(|i| 21_000 + (std::process::id() % 2_000) * 10 + i * 7)
        .find(|b| (1..=3).all(|i| TcpListener::bind(("127.0.0.1", (b + i) as u16)).is_ok()))
        .expect("three free ports");
    let env = |c: &mut Command| {
        c.env("TENURE_BIN", env!("CARGO_BIN_EXE_tenure"))
            .env("TENURE_CLUSTER_DIR", &cluster_dir)
            .env("TENURE_PORT_BASE", base.to_string());
    };
    let mut up = Command::new(scripts.join("cluster-up"));
    up.args(["3", "--tls"]);
    env(&mut up);
    let out = up.output().expect("cluster-up runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stopped = || {
        let mut down = Command::new(scripts.join("cluster-down"));
        down.arg("--wipe");
        env(&mut down);
        down.output().expect("cluster-down runs");
    };
    if !out.status.success() {
        stopped();
        panic!(
            "cluster-up --tls failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(text.contains("leader:"), "{text}");
    assert!(text.contains("TENURE_TLS_CA"), "{text}");
    let token = std::fs::read_to_string(cluster_dir.join("token")).expect("the token file");
    let endpoints = format!("127.0.0.1:{}", base + 2);
    let ca = cluster_dir.join("certs/ca.pem").display().to_string();
    let (code, out, err) = tenure(&[
        "lock",
        "acquire",
        "up/tls",
        "--endpoints",
        &endpoints,
        "--tls-ca",
        &ca,
        "--token",
        token.trim(),
    ]);
    stopped();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("token 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_tls_001_a_client_never_sends_a_token_in_clear_beyond_loopback() {
    let mut config = ClientConfig::new(["192.0.2.1:7001"], "default", "x").with_token("secret");
    config.call_timeout = Duration::from_secs(2);
    let refused = match Client::connect(config).await {
        Ok(client) => client.status().await.map(|_| ()),
        Err(e) => Err(e),
    }
    .expect_err("no token in clear");
    assert!(refused.to_string().contains("in clear"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_tls_006_a_client_certificate_is_the_principal_it_names_on_the_http_port() {
    let (ops, ops_entry) = new_token("ops", "admin,writer,reader", "*");
    let auth = format!(
        "{ops_entry}\n[[principal]]\nname = \"client\"\nroles = [\"writer\", \"reader\"]\ntenants = [\"default\"]\n"
    );
    let c = TlsCluster::start(3, 3, &auth).with_http();
    c.leader(&ops).await;
    let read = |p: PathBuf| std::fs::read(p).expect("PEM");
    let ca = read(c.pem("ca"));
    let (cert, key) = (read(c.pem("client")), read(c.key("client")));
    let call = |addr: String,
                path: String,
                body: String,
                headers: Vec<(&'static str, String)>,
                identity: bool| {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let identity = identity.then_some((cert.as_slice(), key.as_slice()));
            common::https_call(&addr, "POST", &path, &headers, &body, &ca, identity).await
        }
    };
    let start = Instant::now();
    for addr in c.http.values() {
        while common::http_get(addr, "/readyz", Some(&ca))
            .await
            .map(|r| r.0)
            .ok()
            != Some(200)
        {
            assert!(start.elapsed() < LIVENESS, "{addr} never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Through every node (followers vouch for the certificate they saw):
    // the certificate's name owns the lease.
    for (i, addr) in c.http.values().enumerate() {
        let body = format!(
            r#"{{"tenant_id":"default","request_id":"c{i}","lock_key":"http/cert-{i}","ttl_seconds":10}}"#
        );
        let (code, text) = call(addr.clone(), "/leases/acquire".into(), body, vec![], true)
            .await
            .expect("TLS with a client certificate");
        assert_eq!(code, 201, "through {addr}: {text}");
        let lease: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(lease["owner_id"], "client", "{text}");
        // Its tenants hold.
        let other = format!(
            r#"{{"tenant_id":"billing","request_id":"b{i}","lock_key":"x","ttl_seconds":10}}"#
        );
        let (code, text) = call(addr.clone(), "/leases/acquire".into(), other, vec![], true)
            .await
            .expect("answers");
        assert_eq!(code, 403, "{text}");
        // Without a certificate or a token: 401; a claimed owner changes nothing.
        let body = format!(
            r#"{{"tenant_id":"default","request_id":"n{i}","lock_key":"http/none","ttl_seconds":10}}"#
        );
        let (code, text) = call(
            addr.clone(),
            "/leases/acquire".into(),
            body.clone(),
            vec![("x-owner-id", "client".into())],
            false,
        )
        .await
        .expect("answers");
        assert_eq!(code, 401, "{text}");
        assert!(text.contains("OWNER_TOKEN_REQUIRED"), "{text}");
        // A token instead: its principal.
        let (code, text) = call(
            addr.clone(),
            "/leases/acquire".into(),
            body.replace(&format!("n{i}"), &format!("t{i}"))
                .replace("http/none", &format!("http/token-{i}")),
            vec![("authorization", format!("Bearer {ops}"))],
            false,
        )
        .await
        .expect("answers");
        assert_eq!(code, 201, "{text}");
        assert!(text.contains(r#""owner_id":"ops""#), "{text}");
    }
    // A certificate from another CA: the handshake is refused.
    let other = tempfile::tempdir().expect("temp dir");
    let (code, _, err) = tenure(&[
        "certs",
        "init",
        "--out",
        &other.path().display().to_string(),
        "--nodes",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let (cert, key) = (
        read(other.path().join("client.pem")),
        read(other.path().join("client-key.pem")),
    );
    let addr = c.http[&1].clone();
    let refused = common::https_call(
        &addr,
        "POST",
        "/leases/acquire",
        &[],
        "{}",
        &ca,
        Some((cert.as_slice(), key.as_slice())),
    )
    .await;
    assert!(
        refused.is_err(),
        "a stranger's certificate was answered: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_probe_002_the_http_port_of_a_tls_node_serves_tls_only() {
    let (ops, ops_entry) = new_token("ops", "admin", "*");
    let mut c = TlsCluster::start(1, 1, &ops_entry);
    // Node 1 again, with an HTTP port: the same TLS serves it.
    if let Some(mut child) = c.nodes.remove(&1) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let http = common::free_members(1).0[&1].clone();
    let members = c.members.clone();
    c.spawn_with(1, &["--initial-cluster", &members, "--http-listen", &http]);
    c.leader(&ops).await;
    let ca = std::fs::read(c.pem("ca")).expect("the CA");
    let start = Instant::now();
    let (code, body) = loop {
        match common::http_get(&http, "/readyz", Some(&ca)).await {
            Ok((200, body)) => break (200, body),
            Ok(_) | Err(_) if start.elapsed() < LIVENESS => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("never ready over TLS: {other:?}"),
        }
    };
    assert_eq!(code, 200, "{body}");
    let (code, _) = common::http_get(&http, "/healthz", Some(&ca))
        .await
        .expect("TLS");
    assert_eq!(code, 200);
    // Plain HTTP to it gets no HTTP answer.
    assert!(
        common::http_get(&http, "/healthz", None).await.is_err(),
        "plaintext was answered"
    );
}
