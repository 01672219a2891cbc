//! The Tenure side: the lock service through tenure-client, as a careful
//! program uses it — the client follows the leader each answer names, and
//! retries a refusal that may pass (a leader change, an unreachable node)
//! with the same request_id, so a retry never takes a second lease.

use std::time::Duration;

use tenure_client::{
    AcquireOptions, Client, ClientConfig, Error, KeepAliveStream, Mode, TlsConfig,
};

use crate::target::{Downstream, OpError, Target};

/// How long one call, retries included, may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Tenure cluster reached through `endpoints`.
#[derive(Clone, Debug)]
pub struct TenureTarget {
    endpoints: Vec<String>,
    tenant: String,
    token: Option<String>,
    tls: Option<TlsConfig>,
    /// Makes owner names unique to this run, so a run never meets a lease
    /// an earlier run left behind as its own.
    run: u64,
}

impl TenureTarget {
    /// A target for the cluster at `endpoints` (`host:port`), acting in
    /// `tenant`, with a bearer `token` for clusters that require one.
    pub fn new(
        endpoints: Vec<String>,
        tenant: String,
        token: Option<String>,
        run: u64,
    ) -> TenureTarget {
        TenureTarget {
            endpoints,
            tenant,
            token,
            tls: None,
            run,
        }
    }

    /// The same target, reached over TLS when `tls` is given.
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> TenureTarget {
        self.tls = tls;
        self
    }
}

/// One benchmark client: its own tenure-client (its own connections), and
/// the leases of the keep-alive workload.
pub struct TenureConn {
    client: Client,
    /// Leases of the keep-alive workload.
    held: Vec<String>,
    stream: Option<KeepAliveStream>,
}

fn op_error(e: &Error) -> OpError {
    OpError::new(e.reason().as_str())
}

impl Target for TenureTarget {
    type Conn = TenureConn;

    fn system(&self) -> &'static str {
        "tenure"
    }

    async fn connect(&self, client: u32) -> Result<TenureConn, OpError> {
        let owner = format!("bench-{:x}-{client}", self.run);
        let mut config = ClientConfig::new(self.endpoints.clone(), &self.tenant, &owner);
        config.token = self.token.clone();
        config.tls = self.tls.clone();
        config.call_timeout = CALL_TIMEOUT;
        let client = Client::connect(config).await.map_err(|e| op_error(&e))?;
        // A linearizable read finds the leader (and proves the cluster answers).
        client.get("bench/probe").await.map_err(|e| op_error(&e))?;
        Ok(TenureConn {
            client,
            held: Vec::new(),
            stream: None,
        })
    }

    async fn lock_cycle(
        conn: &mut TenureConn,
        key: &str,
        ttl: Duration,
        wait: Option<Duration>,
        downstream: Option<&Downstream>,
    ) -> Result<(), OpError> {
        let options = AcquireOptions::waiting(wait.unwrap_or_default());
        let lease = conn
            .client
            .lease(key, ttl, options)
            .await
            .map_err(|e| op_error(&e))?;
        let written = downstream.map_or(Ok(()), |d| d.write(key, lease.view.token));
        conn.client
            .release(&lease.view.id.to_string(), None)
            .await
            .map_err(|e| op_error(&e))?;
        written
    }

    fn has_modes(&self) -> bool {
        true
    }

    async fn lock_cycle_in(
        conn: &mut TenureConn,
        key: &str,
        ttl: Duration,
        wait: Duration,
        mode: Mode,
    ) -> Result<(), OpError> {
        let options = AcquireOptions::waiting(wait).in_mode(mode);
        let lease = conn
            .client
            .lease(key, ttl, options)
            .await
            .map_err(|e| op_error(&e))?;
        conn.client
            .release(&lease.view.id.to_string(), None)
            .await
            .map(|_| ())
            .map_err(|e| op_error(&e))
    }

    async fn get(conn: &mut TenureConn, key: &str) -> Result<(), OpError> {
        conn.client
            .get(key)
            .await
            .map(|_| ())
            .map_err(|e| op_error(&e))
    }

    async fn hold(conn: &mut TenureConn, keys: &[String], ttl: Duration) -> Result<(), OpError> {
        for key in keys {
            let lease = conn
                .client
                .lease(key, ttl, AcquireOptions::default())
                .await
                .map_err(|e| op_error(&e))?;
            conn.held.push(lease.view.id.to_string());
        }
        Ok(())
    }

    async fn keep_alive_round(conn: &mut TenureConn) -> Result<u64, OpError> {
        if conn.stream.is_none() {
            let stream = conn
                .client
                .keep_alive_stream()
                .await
                .map_err(|e| op_error(&e))?;
            conn.stream = Some(stream);
        }
        let Some(stream) = conn.stream.as_mut() else {
            return Err(OpError::new("NO_STREAM"));
        };
        let answers = match stream.renew_all(&conn.held).await {
            Ok(a) => a,
            Err(e) => {
                conn.stream = None;
                return Err(op_error(&e));
            }
        };
        let mut alive = 0;
        let mut lost = None;
        for a in answers {
            match a.result {
                Ok(_) => alive += 1,
                Err(reason) => lost = Some(reason),
            }
        }
        match lost {
            Some(reason) => Err(OpError::new(reason.as_str())),
            None => Ok(alive),
        }
    }

    fn retries(conn: &TenureConn) -> u64 {
        conn.client.retries()
    }

    async fn release_all(conn: &mut TenureConn) {
        conn.stream = None;
        for lease_id in std::mem::take(&mut conn.held) {
            let _ = conn.client.release(&lease_id, None).await;
        }
    }
}
