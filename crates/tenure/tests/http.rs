//! The reference's HTTP/JSON contract against a 3-node cluster of real
//! processes, every node's HTTP port: its acceptance cases (LS-ACC-01..04)
//! and its refusals (409, 401, 403), with the bodies it defined (TN-HTTP-001).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

const LIVENESS: Duration = Duration::from_secs(20);

struct Cluster {
    http: BTreeMap<u64, String>,
    /// Each node's gRPC address.
    grpc: BTreeMap<u64, String>,
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three nodes with HTTP ports, 1 s as the shortest TTL.
fn cluster() -> Cluster {
    let (grpc, members) = common::free_members(3);
    let http = common::free_members(3).0;
    let dir = tempfile::tempdir().expect("temp dir");
    let nodes = (1..=3u64)
        .map(|id| {
            Command::new(env!("CARGO_BIN_EXE_tenure"))
                .args([
                    "serve",
                    "--id",
                    &id.to_string(),
                    "--initial-cluster",
                    &members,
                ])
                .args(["--http-listen", &http[&id], "--ttl-min-ms", "1000"])
                .arg("--data-dir")
                .arg(dir.path().join(format!("node-{id}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tenure serve starts")
        })
        .collect();
    Cluster {
        http,
        grpc,
        nodes,
        _dir: dir,
    }
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    owner: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut headers = Vec::new();
    if let Some(o) = owner {
        headers.push(("x-owner-id", o));
    }
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (code, body) = common::http_call(addr, method, path, &headers, &text)
        .await
        .expect("the HTTP port answers");
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    (code, value)
}

fn acquire_body(owner: &str, rid: &str, key: &str, ttl_seconds: u64) -> Value {
    json!({"tenant_id": "t", "request_id": rid, "lock_key": key, "owner_id": owner, "ttl_seconds": ttl_seconds})
}

/// Waits until every node's /readyz says ready.
async fn ready(c: &Cluster) {
    let start = Instant::now();
    for addr in c.http.values() {
        loop {
            if let Ok((200, _)) = common::http_get(addr, "/readyz", None).await {
                break;
            }
            assert!(start.elapsed() < LIVENESS, "{addr} never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn assert_error(code: u16, body: &Value, status: u16, reason: &str) {
    assert_eq!(code, status, "{body}");
    assert_eq!(body["code"], reason, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(
        body["server_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_http_001_the_reference_contract_on_every_node() {
    let c = cluster();
    ready(&c).await;
    let ports: Vec<String> = c.http.values().cloned().collect();
    let port = |i: usize| ports[i % ports.len()].as_str();

    // LS-ACC-01: ten owners at once, through all three nodes: one 201.
    let calls = (0..10).map(|i| {
        let addr = port(i).to_owned();
        async move {
            let owner = format!("owner-{i}");
            call(
                &addr,
                "POST",
                "/leases/acquire",
                Some(&owner),
                &acquire_body(&owner, &format!("r{i}"), "acc01", 10),
            )
            .await
        }
    });
    let results = futures_join(calls).await;
    let granted: Vec<&Value> = results
        .iter()
        .filter(|(c, _)| *c == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(granted.len(), 1, "{results:?}");
    for (code, body) in results.iter().filter(|(c, _)| *c != 201) {
        assert_error(*code, body, 409, "LOCK_HELD");
    }
    let lease = granted[0];
    for field in [
        "lease_id",
        "tenant_id",
        "lock_key",
        "owner_id",
        "status",
        "acquired_at",
        "expires_at",
        "last_renewed_at",
        "server_time",
    ] {
        assert!(lease[field].is_string(), "{field} in {lease}");
    }
    assert_eq!(lease["status"], "ACTIVE");
    assert_eq!(lease["fencing_token"], 1);
    assert_eq!(lease["version"], 1);

    // LS-ACC-02: a 2 s lease; another owner's renew is OWNER_MISMATCH; after
    // the TTL the owner's release is LEASE_EXPIRED (or LEASE_NOT_ACTIVE).
    let (code, a) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("alice"),
        &acquire_body("alice", "a1", "acc02", 2),
    )
    .await;
    assert_eq!(code, 201, "{a}");
    let id = a["lease_id"].as_str().expect("an id").to_owned();
    let (code, body) = call(
        port(1),
        "POST",
        &format!("/leases/{id}/renew"),
        Some("bob"),
        &json!({"request_id": "b1", "owner_id": "bob", "ttl_seconds": 2}),
    )
    .await;
    assert_error(code, &body, 409, "OWNER_MISMATCH");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (code, body) = call(
        port(2),
        "POST",
        &format!("/leases/{id}/release"),
        Some("alice"),
        &json!({"request_id": "a2", "owner_id": "alice"}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["code"] == "LEASE_EXPIRED" || body["code"] == "LEASE_NOT_ACTIVE",
        "{body}"
    );

    // LS-ACC-03: acquire, release, another owner: token + 1; also after an expiry.
    let (_, first) = call(
        port(1),
        "POST",
        "/leases/acquire",
        Some("carol"),
        &acquire_body("carol", "c1", "acc03", 10),
    )
    .await;
    let first_id = first["lease_id"].as_str().expect("an id").to_owned();
    let (code, _) = call(
        port(2),
        "POST",
        &format!("/leases/{first_id}/release"),
        Some("carol"),
        &json!({"request_id": "c2", "owner_id": "carol"}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, second) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("dave"),
        &acquire_body("dave", "d1", "acc03", 1),
    )
    .await;
    assert_eq!(code, 201, "{second}");
    assert_eq!(
        second["fencing_token"].as_u64(),
        first["fencing_token"].as_u64().map(|t| t + 1)
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (code, third) = call(
        port(1),
        "POST",
        "/leases/acquire",
        Some("erin"),
        &acquire_body("erin", "e1", "acc03", 10),
    )
    .await;
    assert_eq!(code, 201, "{third}");
    assert_eq!(
        third["fencing_token"].as_u64(),
        second["fencing_token"].as_u64().map(|t| t + 1)
    );

    // LS-ACC-04: the same acquire twice is the same lease; the same release
    // twice, the same answer.
    let body = acquire_body("frank", "f1", "acc04", 10);
    let (c1, l1) = call(port(0), "POST", "/leases/acquire", Some("frank"), &body).await;
    let (c2, l2) = call(port(1), "POST", "/leases/acquire", Some("frank"), &body).await;
    assert_eq!((c1, c2), (201, 201), "{l1} {l2}");
    assert_eq!(l1["lease_id"], l2["lease_id"]);
    assert_eq!(l1["fencing_token"], l2["fencing_token"]);
    let fid = l1["lease_id"].as_str().expect("an id").to_owned();
    let release = json!({"request_id": "f2", "owner_id": "frank"});
    let (r1, b1) = call(
        port(2),
        "POST",
        &format!("/leases/{fid}/release"),
        Some("frank"),
        &release,
    )
    .await;
    let (r2, b2) = call(
        port(0),
        "POST",
        &format!("/leases/{fid}/release"),
        Some("frank"),
        &release,
    )
    .await;
    assert_eq!((r1, r2), (200, 200));
    assert_eq!(b1["version"], b2["version"]);
    assert_eq!(b1["status"], "RELEASED");

    // GET a lock, its key percent-decoded; tenant_id required.
    let (code, _) = call(
        port(1),
        "POST",
        "/leases/acquire",
        Some("gina"),
        &acquire_body("gina", "g1", "jobs/nightly", 10),
    )
    .await;
    assert_eq!(code, 201);
    let (code, state) = call(
        port(2),
        "GET",
        "/locks/jobs%2Fnightly?tenant_id=t",
        Some("gina"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{state}");
    assert_eq!(state["lock_key"], "jobs/nightly");
    assert_eq!(state["has_active_lease"], true);
    assert_eq!(state["active_lease"]["owner_id"], "gina");
    let (code, body) = call(
        port(2),
        "GET",
        "/locks/jobs%2Fnightly",
        Some("gina"),
        &Value::Null,
    )
    .await;
    assert_error(code, &body, 400, "INVALID_REQUEST");

    // 401: no identity; a body owner that is not the caller.
    let (code, body) = call(
        port(0),
        "POST",
        "/leases/acquire",
        None,
        &acquire_body("x", "x1", "k401", 10),
    )
    .await;
    assert_error(code, &body, 401, "OWNER_TOKEN_REQUIRED");
    let (code, body) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("mallory"),
        &acquire_body("alice", "m1", "k401", 10),
    )
    .await;
    assert_error(code, &body, 401, "OWNER_TOKEN_MISMATCH");
    // 400: a null body, a TTL sent as a string, a TTL out of bounds.
    let (code, body) = call(port(0), "POST", "/leases/acquire", Some("x"), &Value::Null).await;
    assert_error(code, &body, 400, "INVALID_REQUEST");
    let (code, body) = call(port(0), "POST", "/leases/acquire", Some("x"), &json!({"tenant_id": "t", "request_id": "s1", "lock_key": "k", "owner_id": "x", "ttl_seconds": "10"})).await;
    assert_error(code, &body, 400, "INVALID_REQUEST");
    let (code, body) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("x"),
        &acquire_body("x", "s2", "k", 100_000),
    )
    .await;
    assert_error(code, &body, 400, "INVALID_TTL");

    // 403 without x-role: ADMIN; 200 with it, the lock then free.
    let force = json!({"tenant_id": "t", "actor": "ops", "reason": "stuck job"});
    let (code, body) = call(
        port(1),
        "POST",
        "/locks/jobs%2Fnightly/force-release",
        Some("ops"),
        &force,
    )
    .await;
    assert_error(code, &body, 403, "FORBIDDEN");
    let (code, body) = common::http_call(
        port(1),
        "POST",
        "/locks/jobs%2Fnightly/force-release",
        &[("x-owner-id", "ops"), ("x-role", "ADMIN")],
        &force.to_string(),
    )
    .await
    .expect("answers");
    assert_eq!(code, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(state["has_active_lease"], false, "{state}");
}

/// The `required` fields of a schema of the OpenAPI document.
fn required(doc: &serde_yaml_ng::Value, schema: &str) -> Vec<String> {
    doc["components"]["schemas"][schema]["required"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{schema} has required fields"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_http_002_the_openapi_document_is_served_and_the_answers_match_it() {
    let c = cluster();
    ready(&c).await;
    let addr = c.http[&1].clone();
    let (code, text) = common::http_get(&addr, "/openapi.yaml", None)
        .await
        .expect("answers");
    assert_eq!(code, 200);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/openapi.yaml"
    ))
    .expect("spec/openapi.yaml");
    assert_eq!(
        text, committed,
        "the node serves spec/openapi.yaml as committed"
    );
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the document parses");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    // Every path it lists is one the node serves (no 404, no 405).
    let paths = doc["paths"].as_mapping().expect("paths");
    for (path, ops) in paths {
        let path = path.as_str().expect("a path");
        let concrete = path
            .replace("{lease_id}", "0000000000000001")
            .replace("{lock_key}", "k");
        for (method, _) in ops.as_mapping().expect("operations") {
            let method = method.as_str().expect("a method").to_ascii_uppercase();
            // A watch streams until told to stop.
            let bound = if path == "/watch" {
                "&timeout_ms=100"
            } else {
                ""
            };
            let (code, _) = common::http_call(
                &addr,
                &method,
                &format!("{concrete}?tenant_id=t{bound}"),
                &[("x-owner-id", "o")],
                "{}",
            )
            .await
            .expect("answers");
            assert!(
                code != 404 || path.starts_with("/leases/{"),
                "{method} {path}: 404"
            );
            assert_ne!(code, 405, "{method} {path}");
        }
    }
    // The answers carry every field the document requires.
    let (code, lease) = call(
        &addr,
        "POST",
        "/leases/acquire",
        Some("o"),
        &acquire_body("o", "doc1", "doc", 10),
    )
    .await;
    assert_eq!(code, 201, "{lease}");
    for field in required(&doc, "Lease") {
        assert!(lease.get(&field).is_some(), "Lease lacks {field}: {lease}");
    }
    let (_, state) = call(
        &addr,
        "GET",
        "/locks/doc?tenant_id=t",
        Some("o"),
        &Value::Null,
    )
    .await;
    for field in required(&doc, "LockState") {
        assert!(
            state.get(&field).is_some(),
            "LockState lacks {field}: {state}"
        );
    }
    let (_, error) = call(
        &addr,
        "POST",
        "/leases/acquire",
        Some("p"),
        &acquire_body("p", "doc2", "doc", 10),
    )
    .await;
    for field in required(&doc, "Error") {
        assert!(error.get(&field).is_some(), "Error lacks {field}: {error}");
    }
    let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_sequence()
        .expect("the reasons")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        codes.contains(&error["code"].as_str().expect("a code")),
        "{error}"
    );
    let (_, reasons, _) = common::run(&["reasons", "--json"]);
    let listed = reasons.lines().count();
    assert_eq!(codes.len(), listed, "the document lists every reason");
}

/// `GET path` with headers; the raw body (NDJSON or SSE, read to its end).
async fn stream_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    common::http_call(addr, "GET", path, headers, "")
        .await
        .expect("the HTTP port answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_http_003_waiting_keep_alive_of_many_list_and_watch_over_http() {
    let c = cluster();
    ready(&c).await;
    let ports: Vec<String> = c.http.values().cloned().collect();
    let port = |i: usize| ports[i % ports.len()].as_str();

    // A waiting acquire (wait_timeout_ms, ttl_ms): granted when the holder
    // releases, with the next token; its answer comes from another node.
    let (code, held) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("h"),
        &json!({"tenant_id": "t", "request_id": "w0", "lock_key": "jobs/a", "ttl_ms": 10_000}),
    )
    .await;
    assert_eq!(code, 201, "{held}");
    assert_eq!(held["ttl_ms"], 10_000);
    let waiter = {
        let addr = port(1).to_owned();
        tokio::spawn(async move {
            call(
                &addr,
                "POST",
                "/leases/acquire",
                Some("w"),
                &json!({"tenant_id": "t", "request_id": "w1", "lock_key": "jobs/a",
                        "ttl_ms": 10_000, "wait_timeout_ms": 10_000}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = held["lease_id"].as_str().expect("an id");
    let (code, body) = call(
        port(2),
        "POST",
        &format!("/leases/{id}/release"),
        Some("h"),
        &json!({"request_id": "w2"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, granted) = waiter.await.expect("the waiter answers");
    assert_eq!(code, 201, "{granted}");
    assert_eq!(granted["status"], "ACTIVE");
    assert_eq!(
        granted["fencing_token"].as_u64(),
        held["fencing_token"].as_u64().map(|t| t + 1)
    );
    // A short wait on a held lock: 408 WAIT_TIMEOUT.
    let (code, body) = call(
        port(0),
        "POST",
        "/leases/acquire",
        Some("x"),
        &json!({"tenant_id": "t", "request_id": "w3", "lock_key": "jobs/a",
                "ttl_ms": 10_000, "wait_timeout_ms": 300}),
    )
    .await;
    assert_error(code, &body, 408, "WAIT_TIMEOUT");

    // Keep-alive of many, through every node: each answer in order, an
    // unknown lease and another owner's in-band.
    let mut mine = Vec::new();
    for k in 0..3 {
        let (code, l) = call(
            port(k),
            "POST",
            "/leases/acquire",
            Some("ka"),
            &json!({"tenant_id": "t", "request_id": format!("ka{k}"),
                    "lock_key": format!("ka/{k}"), "ttl_seconds": 2}),
        )
        .await;
        assert_eq!(code, 201, "{l}");
        mine.push(l["lease_id"].as_str().expect("an id").to_owned());
    }
    let other = granted["lease_id"].as_str().expect("an id").to_owned();
    let unknown = "00000000000000ff".to_owned();
    let mut ids = mine.clone();
    ids.push(other.clone());
    ids.push(unknown.clone());
    // Renewed every second for 3 s: the 2 s leases outlive their TTL.
    for round in 0..3 {
        let (code, body) = call(
            port(round),
            "POST",
            "/leases/keep-alive",
            Some("ka"),
            &json!({"tenant_id": "t", "lease_ids": ids}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let answers = body["leases"].as_array().expect("answers");
        assert_eq!(answers.len(), 5, "{body}");
        for (i, id) in mine.iter().enumerate() {
            assert_eq!(answers[i]["lease_id"], id.as_str());
            assert_eq!(answers[i]["alive"], true, "{body}");
            assert_eq!(answers[i]["ttl_ms"], 2_000);
            assert!(answers[i]["expires_at"].is_string(), "{body}");
        }
        assert_eq!(answers[3]["alive"], false);
        assert_eq!(answers[3]["reason"], "OWNER_MISMATCH", "{body}");
        assert_eq!(answers[4]["alive"], false);
        assert_eq!(answers[4]["reason"], "LEASE_NOT_FOUND", "{body}");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    for (i, id) in mine.iter().enumerate() {
        let (code, state) = call(
            port(i),
            "GET",
            &format!("/locks/ka%2F{i}?tenant_id=t"),
            Some("ka"),
            &Value::Null,
        )
        .await;
        assert_eq!(code, 200, "{state}");
        assert_eq!(state["has_active_lease"], true, "kept alive: {state}");
        assert_eq!(state["active_lease"]["lease_id"], id.as_str());
    }
    // Bad input: no leases, too many, a repeat, a malformed id: 400, nothing renewed.
    let too_many: Vec<String> = (0..1025).map(|i| format!("{i:016x}")).collect();
    for bad in [
        json!({"tenant_id": "t", "lease_ids": []}),
        json!({"tenant_id": "t", "lease_ids": too_many}),
        json!({"tenant_id": "t", "lease_ids": [mine[0], mine[0]]}),
        json!({"tenant_id": "t", "lease_ids": ["not an id"]}),
        json!({"tenant_id": "t", "lease_ids": "x"}),
        json!({"lease_ids": [mine[0]]}),
    ] {
        let (code, body) = call(port(1), "POST", "/leases/keep-alive", Some("ka"), &bad).await;
        assert_error(code, &body, 400, "INVALID_REQUEST");
    }

    // List: by prefix, in key order, a page at a time, from any node.
    let (code, page) = call(
        port(2),
        "GET",
        "/locks?tenant_id=t&prefix=ka%2F&limit=2",
        Some("r"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{page}");
    let keys = |p: &Value| -> Vec<String> {
        p["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .map(|l| l["lock_key"].as_str().expect("a key").to_owned())
            .collect()
    };
    assert_eq!(keys(&page), ["ka/0", "ka/1"]);
    let token = page["next_page_token"].as_str().expect("more").to_owned();
    assert!(!token.is_empty());
    let (code, rest) = call(
        port(0),
        "GET",
        &format!("/locks?tenant_id=t&prefix=ka%2F&limit=2&page_token={token}"),
        Some("r"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{rest}");
    assert_eq!(keys(&rest), ["ka/2"]);
    assert_eq!(rest["next_page_token"], "");
    for bad in [
        "/locks",
        "/locks?tenant_id=t&limit=abc",
        "/locks?tenant_id=t&consistency=eventual",
        "/locks?tenant_id=has%20space",
        "/locks/%FF?tenant_id=t",
        "/locks/k?tenant_id=t&consistency=maybe",
    ] {
        let (code, body) = call(port(0), "GET", bad, Some("r"), &Value::Null).await;
        assert_error(code, &body, 400, "INVALID_REQUEST");
    }
    // A body over the limit: 400 in the error body, nothing granted.
    let huge = json!({"tenant_id": "t", "request_id": "x".repeat(300_000), "lock_key": "huge",
                      "ttl_ms": 10_000});
    let (code, body) = call(port(2), "POST", "/leases/acquire", Some("h"), &huge).await;
    assert_error(code, &body, 400, "INVALID_REQUEST");
    // A malformed caller is refused, never taken for no caller at all.
    let (code, body) = call(
        port(1),
        "GET",
        "/locks?tenant_id=t",
        Some("has space"),
        &Value::Null,
    )
    .await;
    assert_error(code, &body, 400, "INVALID_REQUEST");

    // Watch as NDJSON from sequence 1: every event so far, in order, ending
    // after max_events; the first event is the first grant.
    let (code, text) = stream_get(
        port(1),
        "/watch?tenant_id=t&from_sequence=1&max_events=4",
        &[("x-owner-id", "r")],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 4, "{text}");
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["kind"], "LEASE_ACQUIRE");
    assert_eq!(events[0]["lock_key"], "jobs/a");
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["sequence"].as_u64() < w[1]["sequence"].as_u64())
    );
    // By prefix, bounded by time: only the keys asked for.
    let (code, text) = stream_get(
        port(2),
        "/watch?tenant_id=t&prefix=ka%2F&from_sequence=1&timeout_ms=1000",
        &[("x-owner-id", "r")],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let ka: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(ka.len() >= 3, "{text}");
    assert!(
        ka.iter()
            .all(|e| e["lock_key"].as_str().is_some_and(|k| k.starts_with("ka/")))
    );
    // Server-Sent Events: each event's id is its sequence, and Last-Event-ID
    // resumes after it.
    let (code, text) = stream_get(
        port(0),
        "/watch?tenant_id=t&max_events=2",
        &[
            ("x-owner-id", "r"),
            ("accept", "text/event-stream"),
            ("last-event-id", "1"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["2", "3"], "{text}");
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON data"))
        .collect();
    assert_eq!(data[0]["sequence"], 2);
    // A bad prefix is refused before the stream starts.
    let (code, text) = stream_get(port(0), "/watch?tenant_id=t&prefix=has%20space", &[]).await;
    let body: Value = serde_json::from_str(&text).expect("a JSON error");
    assert_error(code, &body, 400, "INVALID_REQUEST");
}

/// Runs the futures at once.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a call finishes"));
    }
    out
}

/// `POST /leases/acquire` with `body` as `owner`.
async fn acquire_as(addr: &str, owner: &str, body: &Value) -> (u16, Value) {
    call(addr, "POST", "/leases/acquire", Some(owner), body).await
}

/// The lock `key` of tenant `t`, as `GET /locks/{key}` answers it.
async fn lock_at(addr: &str, key: &str) -> Value {
    let (code, lock) = call(
        addr,
        "GET",
        &format!("/locks/{key}?tenant_id=t"),
        Some("reader"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{lock}");
    lock
}

/// Polls the lock `key` until `ready` holds, and answers it; fails saying
/// `what` never happened within [`LIVENESS`].
async fn wait_for_lock(addr: &str, key: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let lock = lock_at(addr, key).await;
        if ready(&lock) {
            return lock;
        }
        assert!(start.elapsed() < LIVENESS, "{what}: {lock}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mode_body(owner: &str, rid: &str, key: &str, mode: &str, limit: u32, wait_ms: u64) -> Value {
    json!({"tenant_id": "t", "request_id": rid, "lock_key": key, "owner_id": owner,
        "ttl_ms": 30_000, "mode": mode, "limit": limit, "wait_timeout_ms": wait_ms})
}

/// Every rule of lock modes over real processes, through HTTP, the Rust
/// client and the CLI (TN-MODE-001..004, TN-MODE-002 for the surfaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_mode_002_shared_locks_and_semaphores_over_http_the_client_and_the_cli() {
    let c = cluster();
    ready(&c).await;
    let port = |i: u64| c.http[&(i % 3 + 1)].clone();

    // SHARED: two readers at once, each with the key's next token.
    let (code, r1) = acquire_as(&port(0), "r1", &mode_body("r1", "a", "rw", "SHARED", 0, 0)).await;
    assert_eq!(code, 201, "{r1}");
    let (code, r2) = acquire_as(&port(1), "r2", &mode_body("r2", "a", "rw", "shared", 0, 0)).await;
    assert_eq!(code, 201, "{r2}");
    assert_eq!(
        (r1["mode"].as_str(), r1["fencing_token"].as_u64()),
        (Some("SHARED"), Some(1))
    );
    assert_eq!(r2["fencing_token"], 2);
    let lock = lock_at(&port(2), "rw").await;
    let holders: Vec<&str> = lock["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter_map(|h| h["lease_id"].as_str())
        .collect();
    assert_eq!(
        holders,
        vec![
            r1["lease_id"].as_str().unwrap(),
            r2["lease_id"].as_str().unwrap()
        ]
    );
    assert_eq!(lock["active_lease"]["lease_id"], r1["lease_id"]);
    assert_eq!(lock["has_active_lease"], true);

    // A writer waits; a reader after it is held back (no writer starvation).
    let writer = {
        let addr = port(0);
        tokio::spawn(async move {
            acquire_as(
                &addr,
                "w",
                &mode_body("w", "a", "rw", "EXCLUSIVE", 0, 20_000),
            )
            .await
        })
    };
    wait_for_lock(&port(1), "rw", "the writer never queued", |lock| {
        lock["waiters"] == 1
    })
    .await;
    let (code, body) =
        acquire_as(&port(2), "r3", &mode_body("r3", "a", "rw", "SHARED", 0, 0)).await;
    assert_error(code, &body, 409, "LOCK_HELD");
    for (who, lease) in [("r1", &r1), ("r2", &r2)] {
        let id = lease["lease_id"].as_str().unwrap();
        let (code, body) = call(
            &port(1),
            "POST",
            &format!("/leases/{id}/release"),
            Some(who),
            &json!({"request_id": "rel", "owner_id": who, "tenant_id": "t"}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, w) = writer.await.expect("the writer's call");
    assert_eq!(code, 201, "{w}");
    assert_eq!(
        (w["mode"].as_str(), w["fencing_token"].as_u64()),
        (Some("EXCLUSIVE"), Some(3))
    );

    // Two readers queue behind the writer; a force-release of the writer
    // grants both in the same apply (its answer already lists them).
    let readers: Vec<_> = ["q1", "q2"]
        .into_iter()
        .map(|who| {
            let addr = port(1);
            tokio::spawn(async move {
                acquire_as(&addr, who, &mode_body(who, "a", "rw", "SHARED", 0, 20_000)).await
            })
        })
        .collect();
    wait_for_lock(&port(2), "rw", "the readers never queued", |lock| {
        lock["waiters"] == 2
    })
    .await;
    let force = json!({"tenant_id": "t", "actor": "ops", "reason": "writer stuck"});
    let (code, body) = common::http_call(
        &port(0),
        "POST",
        "/locks/rw/force-release",
        &[("x-owner-id", "ops"), ("x-role", "ADMIN")],
        &force.to_string(),
    )
    .await
    .expect("answers");
    assert_eq!(code, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("json");
    let granted: Vec<u64> = state["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter_map(|h| h["fencing_token"].as_u64())
        .collect();
    assert_eq!(
        granted,
        vec![4, 5],
        "both readers granted in the force-release's apply: {state}"
    );
    for r in readers {
        let (code, body) = r.await.expect("a reader's call");
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["mode"], "SHARED");
    }

    // A semaphore of 2: two holders, the third refused, then queued and
    // granted the slot an expiry frees.
    let sem = |owner: &str, rid: &str, ttl_ms: u64, wait: u64| {
        json!({"tenant_id": "t", "request_id": rid, "lock_key": "pool",
        "owner_id": owner, "ttl_ms": ttl_ms, "mode": "SEMAPHORE", "limit": 2, "wait_timeout_ms": wait})
    };
    let (code, s1) = acquire_as(&port(0), "s1", &sem("s1", "a", 1_000, 0)).await;
    assert_eq!(code, 201, "{s1}");
    let (code, s2) = acquire_as(&port(1), "s2", &sem("s2", "a", 30_000, 0)).await;
    assert_eq!(code, 201, "{s2}");
    assert_eq!(
        (s2["mode"].as_str(), s2["limit"].as_u64()),
        (Some("SEMAPHORE"), Some(2))
    );
    let (code, body) = acquire_as(&port(2), "s3", &sem("s3", "a", 30_000, 0)).await;
    assert_error(code, &body, 409, "LOCK_HELD");
    // The request memory is per grant: a retry answers the same lease, the
    // same request_id with another limit is another request.
    let (code, again) = acquire_as(&port(2), "s2", &sem("s2", "a", 30_000, 0)).await;
    assert_eq!(
        (code, &again["lease_id"]),
        (201, &s2["lease_id"]),
        "{again}"
    );
    let other = json!({"tenant_id": "t", "request_id": "a", "lock_key": "pool", "owner_id": "s2",
        "ttl_ms": 30_000, "mode": "SEMAPHORE", "limit": 3});
    let (code, body) = acquire_as(&port(2), "s2", &other).await;
    assert_error(code, &body, 409, "REQUEST_ID_REUSED");
    // The key's kind is fixed while it is busy, and bad pairs are refused.
    let (code, body) = acquire_as(
        &port(2),
        "s3",
        &mode_body("s3", "b", "pool", "SHARED", 0, 0),
    )
    .await;
    assert_error(code, &body, 409, "LOCK_MODE_CONFLICT");
    let (code, body) = acquire_as(
        &port(2),
        "s3",
        &mode_body("s3", "c", "pool", "SEMAPHORE", 3, 0),
    )
    .await;
    assert_error(code, &body, 409, "LOCK_MODE_CONFLICT");
    for (mode, limit) in [("SEMAPHORE", 0), ("SHARED", 2), ("bogus", 0)] {
        let (code, body) = acquire_as(
            &port(2),
            "s3",
            &mode_body("s3", "d", "other", mode, limit, 0),
        )
        .await;
        assert_error(code, &body, 400, "INVALID_REQUEST");
    }
    // s1's 1 s lease is never renewed: its expiry hands its slot on.
    let (code, s3) = acquire_as(&port(2), "s3", &sem("s3", "e", 30_000, 20_000)).await;
    assert_eq!(code, 201, "{s3}");
    assert_eq!(s3["fencing_token"], 3);
    let lock = lock_at(&port(0), "pool").await;
    assert_eq!(lock["limit"], 2);
    assert_eq!(lock["holders"].as_array().map(Vec::len), Some(2), "{lock}");

    // The Rust client: a guard per mode, kept alive past its TTL, and a
    // watch that lists the holders after each event.
    let endpoints: Vec<String> = c.grpc.values().cloned().collect();
    let client = |owner: &str| {
        let config = tenure_client::ClientConfig::new(endpoints.clone(), "t", owner);
        async move {
            tenure_client::Client::connect(config)
                .await
                .expect("connects")
        }
    };
    let (a, b) = (client("ga").await, client("gb").await);
    let mut watch = a
        .watch(tenure_client::WatchOptions {
            prefix: "g/".into(),
            from_sequence: 0,
            all_tenants: false,
        })
        .await
        .expect("a watch");
    let ttl = Duration::from_millis(1_500);
    let ga = a
        .acquire_shared("g/rw", ttl, Duration::ZERO)
        .await
        .expect("shared");
    let gb = b
        .acquire_shared("g/rw", ttl, Duration::ZERO)
        .await
        .expect("shared beside it");
    let sa = a
        .acquire_semaphore("g/sem", 2, ttl, Duration::ZERO)
        .await
        .expect("a slot");
    tokio::time::sleep(ttl * 2).await;
    assert!(
        ga.is_valid() && gb.is_valid() && sa.is_valid(),
        "kept alive past the TTL"
    );
    let state = a.get("g/rw").await.expect("get");
    assert_eq!(state.view.holders.len(), 2);
    assert!(
        state
            .holders
            .iter()
            .all(|h| h.view.mode == tenure_client::Mode::Shared && h.expires_in_ms > 0)
    );
    let refused = b
        .acquire_semaphore("g/rw", 2, ttl, Duration::ZERO)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.reason(), tenure_client::Reason::LockModeConflict);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = tokio::time::timeout(LIVENESS, watch.next())
            .await
            .expect("an event")
            .expect("open")
            .expect("ok");
        seen.push(e.event);
    }
    assert_eq!(
        seen[1].holders.len(),
        2,
        "the second grant lists both readers: {seen:?}"
    );
    assert_eq!(seen[2].mode, tenure_client::Mode::Semaphore(2));
    for g in [ga, gb, sa] {
        g.release().await.expect("release");
    }

    // The CLI: --shared and --limit, and a command under a semaphore slot.
    let cli = |args: &[&str]| {
        let eps = endpoints.join(",");
        let mut all = vec![args[0], args[1], "--endpoints", &eps, "--tenant", "t"];
        all.extend(&args[2..]);
        common::run(&all)
    };
    let (code, out, err) = cli(&[
        "lock", "acquire", "cli/rw", "--shared", "--owner", "c1", "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let l: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        (l["mode"].as_str(), l["fencing_token"].as_u64()),
        (Some("SHARED"), Some(1))
    );
    let (code, out, err) = cli(&["lock", "acquire", "cli/rw", "--shared", "--owner", "c2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SHARED token 2"), "{out}");
    let (code, out, _) = cli(&["lock", "get", "cli/rw"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("held shared by c1") && out.contains("c2"),
        "{out}"
    );
    let (code, _, err) = cli(&["lock", "acquire", "cli/rw", "--owner", "c3"]);
    assert_eq!(code, 1);
    assert!(err.contains("LOCK_HELD"), "{err}");
    let (code, out, err) = cli(&[
        "lock",
        "run",
        "cli/sem",
        "--limit",
        "2",
        "--owner",
        "c4",
        "--",
        "sh",
        "-c",
        "echo token=$TENURE_FENCING_TOKEN",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("token=1"), "{out}");
    let (code, _, err) = cli(&["lock", "acquire", "cli/x", "--shared", "--limit", "2"]);
    assert_eq!(code, 2, "--shared with --limit is a usage error: {err}");
    let (code, _, err) = cli(&["lock", "acquire", "cli/x", "--limit", "0"]);
    assert_eq!(code, 2, "a limit of 0 is a usage error: {err}");

    // Lock-delay and quotas per grant, configured at run time.
    let eps = endpoints.join(",");
    let (code, _, err) = common::run(&[
        "cluster",
        "configure",
        "--endpoints",
        &eps,
        "--lock-delay-ms",
        "60000",
        "--max-waiters-per-lock",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let shared = |owner: &str, key: &str, ttl_ms: u64| {
        json!({"tenant_id": "t", "request_id": "x", "lock_key": key,
        "owner_id": owner, "ttl_ms": ttl_ms, "mode": "SHARED"})
    };
    let (code, d1) = acquire_as(&port(0), "d1", &shared("d1", "d", 1_000)).await;
    assert_eq!(code, 201, "{d1}");
    let (code, d2) = acquire_as(&port(0), "d2", &shared("d2", "d", 30_000)).await;
    assert_eq!(code, 201, "{d2}");
    // d1 is never renewed: its expiry starts the key's lock-delay, and d2
    // keeps its grant meanwhile.
    let lock = wait_for_lock(&port(1), "d", "d1 never expired", |lock| {
        lock["lock_delayed"] == true
    })
    .await;
    let holders: Vec<&Value> = lock["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| &h["lease_id"])
        .collect();
    assert_eq!(holders, vec![&d2["lease_id"]], "{lock}");
    let id = d2["lease_id"].as_str().expect("an id");
    let (code, body) = call(
        &port(1),
        "POST",
        &format!("/leases/{id}/release"),
        Some("d2"),
        &json!({"request_id": "r", "owner_id": "d2", "tenant_id": "t"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = acquire_as(&port(2), "d3", &shared("d3", "d", 30_000)).await;
    assert_error(code, &body, 409, "LOCK_DELAYED");
    // Two shared holders fill a key whose holders are bounded by 2; a
    // semaphore above the bound is refused.
    for who in ["e1", "e2"] {
        let (code, b) = acquire_as(&port(0), who, &shared(who, "e", 30_000)).await;
        assert_eq!(code, 201, "{b}");
    }
    let (code, b) = acquire_as(&port(0), "e3", &shared("e3", "e", 30_000)).await;
    assert_error(code, &b, 429, "TOO_MANY_WAITERS");
    let (code, b) = acquire_as(
        &port(0),
        "e3",
        &mode_body("e3", "y", "f", "SEMAPHORE", 3, 0),
    )
    .await;
    assert_error(code, &b, 400, "INVALID_REQUEST");
}
