//! `tenure-bench-etcd`: `tenure bench`'s workloads against etcd, through
//! etcd's own lease and lock APIs, as an etcd user would write them:
//!
//! - lock cycle: `Lock(name, lease)` then `Unlock(key)`. Each client holds
//!   one lease (a session), granted at start and kept alive in the
//!   background, as etcd's concurrency package does;
//! - fenced: the same, writing downstream under the lock response's
//!   revision, which grows with every new holder of a name;
//! - keep-alive: `LeaseGrant` per lease, then `LeaseKeepAlive` for each;
//! - contended: `Lock` blocks until the name is free (etcd's lock has no
//!   wait bound of its own), then `Unlock`;
//! - get: a linearizable range read of one key.
//!
//! Refusals that may pass (unavailable, no leader, a deadline) are retried
//! for up to 10 s, as Tenure's bench client does.
#![allow(clippy::disallowed_methods)] // measuring wall-clock time is this tool's purpose

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, LockOptions};
use tenure_bench::{BenchArgs, Downstream, OpError, Target};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The etcd side of `tenure bench`.
#[derive(Debug, Parser)]
#[command(name = "tenure-bench-etcd", version, about)]
struct Cli {
    /// etcd client endpoints, host:port, comma-separated.
    #[arg(long, default_value = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")]
    endpoints: String,
    /// The report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bench: BenchArgs,
}

struct Etcd {
    endpoints: Vec<String>,
    ttl_secs: i64,
}

struct EtcdConn {
    client: Client,
    /// The client's session lease for its locks, and its keep-alive task.
    session: i64,
    session_keeper: JoinHandle<()>,
    retries: u64,
    held: Vec<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
}

impl Drop for EtcdConn {
    fn drop(&mut self) {
        self.session_keeper.abort();
    }
}

fn reason(e: &etcd_client::Error) -> (String, bool) {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let code = s.code();
            let retry = matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ) || s.message().contains("leader");
            (format!("GRPC_{code:?}").to_uppercase(), retry)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            ("TRANSPORT".into(), true)
        }
        etcd_client::Error::LeaseKeepAliveError(_) => ("STREAM_CLOSED".into(), false),
        other => (format!("{other}"), false),
    }
}

impl EtcdConn {
    /// Runs `op` until it succeeds, fails for good, or the call times out.
    async fn retrying<R, F>(&mut self, mut op: F) -> Result<R, OpError>
    where
        F: for<'a> FnMut(
            &'a mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<R, etcd_client::Error>> + Send + 'a>,
        >,
    {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, op(&mut self.client)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    let (name, retry) = reason(&e);
                    if !retry || Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(OpError::new(name));
                    }
                    self.retries += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(_) => return Err(OpError::new("GRPC_DEADLINEEXCEEDED")),
            }
        }
    }
}

/// Keeps a lease alive every third of its TTL until aborted.
fn keep_session(mut client: Client, lease: i64, ttl_secs: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_millis((ttl_secs.max(1) as u64 * 1000) / 3);
        loop {
            if let Ok((mut keeper, mut stream)) = client.lease_keep_alive(lease).await {
                loop {
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    if !matches!(stream.message().await, Ok(Some(_))) {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

impl Target for Etcd {
    type Conn = EtcdConn;

    fn system(&self) -> &'static str {
        "etcd"
    }

    async fn connect(&self, _client: u32) -> Result<EtcdConn, OpError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let mut client = Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| OpError::new(reason(&e).0))?;
        let lease = client
            .lease_grant(self.ttl_secs, None)
            .await
            .map_err(|e| OpError::new(reason(&e).0))?
            .id();
        let session_keeper = keep_session(client.clone(), lease, self.ttl_secs);
        Ok(EtcdConn {
            client,
            session: lease,
            session_keeper,
            retries: 0,
            held: Vec::new(),
        })
    }

    async fn lock_cycle(
        conn: &mut EtcdConn,
        key: &str,
        _ttl: Duration,
        _wait: Option<Duration>,
        downstream: Option<&Downstream>,
    ) -> Result<(), OpError> {
        let lease = conn.session;
        let name = key.to_owned();
        let locked = conn
            .retrying(|c| {
                let name = name.clone();
                Box::pin(async move {
                    c.lock(name, Some(LockOptions::new().with_lease(lease)))
                        .await
                })
            })
            .await?;
        let token = locked.header().map_or(0, |h| h.revision()).max(0) as u64;
        let owner_key = locked.key().to_vec();
        let written = downstream.map_or(Ok(()), |d| d.write(key, token));
        conn.retrying(|c| {
            let owner_key = owner_key.clone();
            Box::pin(async move { c.unlock(owner_key).await })
        })
        .await?;
        written
    }

    async fn get(conn: &mut EtcdConn, key: &str) -> Result<(), OpError> {
        let key = key.to_owned();
        conn.retrying(|c| {
            let key = key.clone();
            Box::pin(async move { c.get(key, None).await })
        })
        .await
        .map(|_| ())
    }

    async fn hold(conn: &mut EtcdConn, keys: &[String], ttl: Duration) -> Result<(), OpError> {
        let ttl_secs = ttl.as_secs().max(1) as i64;
        for _ in keys {
            let id = conn
                .retrying(|c| Box::pin(async move { c.lease_grant(ttl_secs, None).await }))
                .await?
                .id();
            let (keeper, stream) = conn
                .retrying(|c| Box::pin(async move { c.lease_keep_alive(id).await }))
                .await?;
            conn.held.push((id, keeper, stream));
        }
        Ok(())
    }

    async fn keep_alive_round(conn: &mut EtcdConn) -> Result<u64, OpError> {
        for (_, keeper, _) in conn.held.iter_mut() {
            keeper
                .keep_alive()
                .await
                .map_err(|e| OpError::new(reason(&e).0))?;
        }
        let mut alive = 0;
        for (id, keeper, stream) in conn.held.iter_mut() {
            match stream.message().await {
                Ok(Some(r)) if r.ttl() > 0 => alive += 1,
                Ok(Some(_)) => return Err(OpError::new("LEASE_LOST")),
                Ok(None) | Err(_) => {
                    // The stream broke (its member died): open another.
                    let (k, s) = conn
                        .client
                        .lease_keep_alive(*id)
                        .await
                        .map_err(|e| OpError::new(reason(&e).0))?;
                    (*keeper, *stream) = (k, s);
                    return Err(OpError::new("STREAM_CLOSED"));
                }
            }
        }
        Ok(alive)
    }

    async fn release_all(conn: &mut EtcdConn) {
        for (id, _, _) in std::mem::take(&mut conn.held) {
            let _ = conn.client.lease_revoke(id).await;
        }
    }

    fn retries(conn: &EtcdConn) -> u64 {
        conn.retries
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tenure-bench-etcd: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<String> = cli
        .endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| format!("http://{e}"))
        .collect();
    let target = Arc::new(Etcd {
        endpoints,
        ttl_secs: (cli.bench.ttl_ms / 1000).max(1) as i64,
    });
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(tenure_bench::run(target, &cli.bench))?;
    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    for path in tenure_bench::write(&report, &cli.bench)? {
        if !cli.json {
            writeln!(out, "  wrote       {}", path.display())?;
        }
    }
    Ok(())
}
