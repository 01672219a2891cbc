//! The Tenure side over HTTP/JSON: the same workloads through a node's HTTP
//! port, as a program in another language would call it (HTTP/1.1 with
//! keep-alive, one connection per client). A refusal that may pass (503, or
//! 429 RATE_LIMITED) is retried with the same request_id, as tenure-client
//! retries over gRPC, so the two transports compare like for like.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use tenure_client::Mode;

use crate::target::{Downstream, OpError, Target};

/// How long one call, retries included, may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before retrying a refusal that may pass.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Leases one keep-alive call renews (the API's bound).
const KEEP_ALIVE_BATCH: usize = 1_024;

/// A Tenure cluster reached through the HTTP ports at `endpoints`.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    endpoints: Vec<String>,
    tenant: String,
    token: Option<String>,
    run: u64,
}

impl HttpTarget {
    /// A target for the HTTP ports at `endpoints` (`host:port`; client `i`
    /// uses endpoint `i` mod their number), acting in `tenant`, with a
    /// bearer `token` for clusters that require one.
    pub fn new(endpoints: Vec<String>, tenant: String, token: Option<String>, run: u64) -> Self {
        HttpTarget {
            endpoints,
            tenant,
            token,
            run,
        }
    }
}

/// One benchmark client: its own HTTP connection.
pub struct HttpConn {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    tenant: String,
    /// `authorization` or `x-owner-id`, and its value.
    identity: (&'static str, String),
    prefix: String,
    next_id: AtomicU64,
    retries: u64,
    held: Vec<String>,
}

impl HttpConn {
    fn request_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// One call: (status, JSON body). Retries what may pass.
    async fn call(&mut self, method: &str, path: &str, body: &Value) -> Result<Value, OpError> {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let text = if body.is_null() {
                Bytes::new()
            } else {
                Bytes::from(body.to_string())
            };
            let request = http::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .header(self.identity.0, &self.identity.1)
                .body(Full::new(text))
                .map_err(|_| OpError::new("BAD_REQUEST"))?;
            let answer = async {
                let response = self
                    .http
                    .request(request)
                    .await
                    .map_err(|_| OpError::new("UNAVAILABLE"))?;
                let status = response.status().as_u16();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|_| OpError::new("UNAVAILABLE"))?
                    .to_bytes();
                let value: Value =
                    serde_json::from_slice(&bytes).map_err(|_| OpError::new("BAD_ANSWER"))?;
                Ok::<_, OpError>((status, value))
            }
            .await;
            let retry = match &answer {
                Ok((status, value)) if (200..300).contains(status) => {
                    return Ok(value.clone());
                }
                Ok((status, value)) => {
                    let code = value["code"].as_str().unwrap_or("UNKNOWN").to_owned();
                    let again = *status == 503 || code == "RATE_LIMITED";
                    if !again {
                        return Err(OpError::new(code));
                    }
                    OpError::new(code)
                }
                Err(e) => e.clone(),
            };
            if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                return Err(retry);
            }
            self.retries += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn acquire(
        &mut self,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
        mode: Mode,
    ) -> Result<(String, u64), OpError> {
        let body = json!({
            "tenant_id": self.tenant,
            "request_id": self.request_id(),
            "lock_key": key,
            "ttl_ms": ttl.as_millis() as u64,
            "wait_timeout_ms": wait.map_or(0, |w| w.as_millis() as u64),
            "mode": mode.as_str(),
            "limit": mode.limit(),
        });
        let lease = self.call("POST", "/leases/acquire", &body).await?;
        let id = lease["lease_id"]
            .as_str()
            .ok_or_else(|| OpError::new("BAD_ANSWER"))?
            .to_owned();
        let token = lease["fencing_token"]
            .as_u64()
            .ok_or_else(|| OpError::new("BAD_ANSWER"))?;
        Ok((id, token))
    }

    async fn release(&mut self, lease_id: &str) -> Result<(), OpError> {
        let body = json!({"tenant_id": self.tenant, "request_id": self.request_id()});
        self.call("POST", &format!("/leases/{lease_id}/release"), &body)
            .await
            .map(|_| ())
    }
}

/// `key` percent-encoded as one path segment (`/` too).
fn segment(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Target for HttpTarget {
    type Conn = HttpConn;

    fn system(&self) -> &'static str {
        "tenure-http"
    }

    async fn connect(&self, client: u32) -> Result<HttpConn, OpError> {
        let endpoint = self
            .endpoints
            .get(client as usize % self.endpoints.len().max(1))
            .ok_or_else(|| OpError::new("NO_ENDPOINT"))?;
        let owner = format!("bench-{:x}-{client}", self.run);
        let identity = match &self.token {
            Some(t) => ("authorization", format!("Bearer {t}")),
            None => ("x-owner-id", owner.clone()),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        let mut conn = HttpConn {
            http,
            base: format!("http://{endpoint}"),
            tenant: self.tenant.clone(),
            identity,
            prefix: owner,
            next_id: AtomicU64::new(0),
            retries: 0,
            held: Vec::new(),
        };
        // A read proves the port answers.
        Self::get(&mut conn, "bench/probe").await?;
        Ok(conn)
    }

    async fn lock_cycle(
        conn: &mut HttpConn,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
        downstream: Option<&Downstream>,
    ) -> Result<(), OpError> {
        let (id, token) = conn.acquire(key, ttl, wait, Mode::Exclusive).await?;
        let written = downstream.map_or(Ok(()), |d| d.write(key, token));
        conn.release(&id).await?;
        written
    }

    fn has_modes(&self) -> bool {
        true
    }

    async fn lock_cycle_in(
        conn: &mut HttpConn,
        key: &str,
        ttl: Duration,
        wait: Duration,
        mode: Mode,
    ) -> Result<(), OpError> {
        let (id, _) = conn.acquire(key, ttl, Some(wait), mode).await?;
        conn.release(&id).await
    }

    async fn get(conn: &mut HttpConn, key: &str) -> Result<(), OpError> {
        let path = format!("/locks/{}?tenant_id={}", segment(key), conn.tenant);
        conn.call("GET", &path, &Value::Null).await.map(|_| ())
    }

    async fn hold(conn: &mut HttpConn, keys: &[String], ttl: Duration) -> Result<(), OpError> {
        for key in keys {
            let (id, _) = conn.acquire(key, ttl, None, Mode::Exclusive).await?;
            conn.held.push(id);
        }
        Ok(())
    }

    async fn keep_alive_round(conn: &mut HttpConn) -> Result<u64, OpError> {
        let mut alive = 0;
        let mut lost = None;
        let held = conn.held.clone();
        for batch in held.chunks(KEEP_ALIVE_BATCH) {
            let body = json!({"tenant_id": conn.tenant, "lease_ids": batch});
            let answer = conn.call("POST", "/leases/keep-alive", &body).await?;
            for a in answer["leases"].as_array().into_iter().flatten() {
                if a["alive"].as_bool() == Some(true) {
                    alive += 1;
                } else {
                    lost = Some(a["reason"].as_str().unwrap_or("LOST").to_owned());
                }
            }
        }
        match lost {
            Some(reason) => Err(OpError::new(reason)),
            None => Ok(alive),
        }
    }

    fn retries(conn: &HttpConn) -> u64 {
        conn.retries
    }

    async fn release_all(conn: &mut HttpConn) {
        for id in std::mem::take(&mut conn.held) {
            let _ = conn.release(&id).await;
        }
    }
}
