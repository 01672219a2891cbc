//! `tenure serve`: run one node until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tenure_raft::{Disk as _, FileDisk, TcpConnector};
use tenure_server::auth::Auth;
use tenure_server::config::parse_members;
use tenure_server::tls::Tls;
use tenure_server::{ClusterState, Node, Settings};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::error::Error;

/// Flags of `tenure serve`; each also reads a `TENURE_*` variable, and each
/// overrides the same setting in `--config`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (see deploy/tenure.toml).
    #[arg(long, env = "TENURE_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id, unique in the cluster.
    #[arg(long, env = "TENURE_ID")]
    id: Option<u64>,
    /// Address to listen on, host:port (default: this node's initial-cluster address).
    #[arg(long, env = "TENURE_LISTEN")]
    listen: Option<String>,
    /// Address of the HTTP port (`/healthz`, `/readyz`), host:port; none: no
    /// HTTP port. Beyond loopback it needs TLS, as gRPC does.
    #[arg(long, env = "TENURE_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Address others reach this node at (default: as in the initial cluster, else --listen).
    #[arg(long, env = "TENURE_ADVERTISE")]
    advertise: Option<String>,
    /// Data directory (default: .tenure/node-ID).
    #[arg(long, env = "TENURE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Founding members: 1=host:port,2=host:port,3=host:port.
    #[arg(long, env = "TENURE_INITIAL_CLUSTER", value_parser = parse_members)]
    initial_cluster: Option<std::collections::BTreeMap<u64, String>>,
    /// `new`: found the cluster with the other initial members; `existing`:
    /// join a running cluster once `tenure cluster add` adds this node.
    #[arg(long, env = "TENURE_INITIAL_CLUSTER_STATE", value_enum)]
    initial_cluster_state: Option<StateArg>,
    /// Leader heartbeat interval, ms.
    #[arg(long, env = "TENURE_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Election timeout, lower bound, ms.
    #[arg(long, env = "TENURE_ELECTION_MIN_MS")]
    election_min_ms: Option<u64>,
    /// Election timeout, upper bound, ms.
    #[arg(long, env = "TENURE_ELECTION_MAX_MS")]
    election_max_ms: Option<u64>,
    /// Snapshot after this many log entries.
    #[arg(long, env = "TENURE_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot for slow followers.
    #[arg(long, env = "TENURE_KEEP_AFTER_SNAPSHOT")]
    keep_after_snapshot: Option<u64>,
    /// Principals with Argon2 token hashes, roles and tenants (TOML); callers
    /// then authenticate with `authorization: Bearer TOKEN`. Without it the
    /// node trusts `x-owner-id` (development only).
    #[arg(long, env = "TENURE_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// Lock-service calls per second one caller may make (0: no limit);
    /// beyond it, RATE_LIMITED (retry later). Default 10000.
    #[arg(long, env = "TENURE_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// The storage's page cache, MiB (default 64).
    #[arg(long, env = "TENURE_CACHE_MB")]
    cache_mb: Option<u64>,
    /// The audit history kept on disk for Watch and `tenure changes`: the
    /// last this many events (default 1000000).
    #[arg(long, env = "TENURE_AUDIT_RETENTION_EVENTS")]
    audit_retention_events: Option<u64>,
    /// The audit history kept on disk: events at most this many hours old
    /// (default 168, a week).
    #[arg(long, env = "TENURE_AUDIT_RETENTION_HOURS")]
    audit_retention_hours: Option<u64>,
    /// This node's certificate (PEM). With --tls-key and --tls-ca, the node
    /// serves TLS only and calls its peers with mutual TLS; required to
    /// listen beyond loopback. `tenure certs init` makes a development set.
    #[arg(long, env = "TENURE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "TENURE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The CA that signs node certificates (PEM): the Raft service answers
    /// only members presenting a certificate from it that names them
    /// (`node-<id>`, as CN or DNS SAN).
    #[arg(long, env = "TENURE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The CA that signs client certificates (PEM): a client presenting one
    /// is the principal its CN (or first DNS/URI SAN) names in the auth file.
    #[arg(long, env = "TENURE_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Shortest TTL a lease may ask for, ms (default 10000).
    #[arg(
        long,
        env = "TENURE_TTL_MIN_MS",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    ttl_min_ms: Option<u64>,
    /// Longest TTL a lease may ask for, ms (default 300000).
    #[arg(
        long,
        env = "TENURE_TTL_MAX_MS",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    ttl_max_ms: Option<u64>,
    /// Longest wait a waiting acquire may ask for, ms (default 300000).
    #[arg(
        long,
        env = "TENURE_MAX_WAIT_TIMEOUT_MS",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    max_wait_timeout_ms: Option<u64>,
    /// After a lease expires, its lock stays ungranted this long, ms (default 0: no lock-delay).
    #[arg(
        long,
        env = "TENURE_LOCK_DELAY_MS",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    lock_delay_ms: Option<u64>,
    /// Bound on each lock's waiting queue (default 1024).
    #[arg(
        long,
        env = "TENURE_MAX_WAITERS_PER_LOCK",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    max_waiters_per_lock: Option<u32>,
    /// Bound on lock records per tenant (default 1000000).
    #[arg(
        long,
        env = "TENURE_MAX_LOCKS_PER_TENANT",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    max_locks_per_tenant: Option<u64>,
    /// Bound on tenants (default 10000).
    #[arg(
        long,
        env = "TENURE_MAX_TENANTS",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    max_tenants: Option<u64>,
    /// A remembered request_id is forgotten after this many log entries (default 1000000).
    #[arg(
        long,
        env = "TENURE_REQUEST_RETENTION_ENTRIES",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    request_retention_entries: Option<u64>,
    /// At most this many request_ids are remembered (default 1000000).
    #[arg(
        long,
        env = "TENURE_REQUEST_RETENTION_COUNT",
        help_heading = "Limits (replicated: proposed when this node founds the cluster; then `tenure cluster configure`)"
    )]
    request_retention_count: Option<u64>,
    /// UNSAFE, for measuring what durability costs: skip the fdatasync
    /// after each flush, so an acknowledged grant or a vote survives a
    /// process crash but not a power loss. Loopback only; never in a
    /// configuration file.
    #[arg(long, env = "TENURE_UNSAFE_NO_FSYNC", hide_env_values = true)]
    unsafe_no_fsync: bool,
}

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StateArg {
    New,
    Existing,
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            id: self.id,
            listen: self.listen.clone(),
            advertise: self.advertise.clone(),
            http_listen: self.http_listen.clone(),
            data_dir: self.data_dir.clone(),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_state: self.initial_cluster_state.map(|s| match s {
                StateArg::New => ClusterState::New,
                StateArg::Existing => ClusterState::Existing,
            }),
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
            snapshot_every: self.snapshot_every,
            keep_after_snapshot: self.keep_after_snapshot,
            auth_file: self.auth_file.clone(),
            rate_limit: self.rate_limit,
            cache_mb: self.cache_mb,
            audit_retention_events: self.audit_retention_events,
            audit_retention_hours: self.audit_retention_hours,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
            client_ca: self.client_ca.clone(),
            ttl_min_ms: self.ttl_min_ms,
            ttl_max_ms: self.ttl_max_ms,
            max_wait_timeout_ms: self.max_wait_timeout_ms,
            lock_delay_ms: self.lock_delay_ms,
            max_waiters_per_lock: self.max_waiters_per_lock,
            max_locks_per_tenant: self.max_locks_per_tenant,
            max_tenants: self.max_tenants,
            request_retention_entries: self.request_retention_entries,
            request_retention_count: self.request_retention_count,
        }
    }
}

/// The negative control `TENURE_CHAOS_CONTROL` names, for the real-process
/// chaos run's deliberately broken build. Only a build made with the
/// `chaos-controls` feature accepts one; any other refuses to start rather
/// than ignore it.
fn chaos_control(name: Option<&str>) -> Result<tenure_server::Sabotage, Error> {
    let mut sabotage = tenure_server::Sabotage::default();
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(sabotage);
    };
    if !cfg!(feature = "chaos-controls") {
        return Err(tenure_server::ServerError::Config(format!(
            "TENURE_CHAOS_CONTROL={name}: this build has no negative controls (only a test build made with \
             --features chaos-controls does); unset it"
        ))
        .into());
    }
    match name {
        "renew-without-read-index" => sabotage.renew_without_read_index = true,
        "no-extension-on-promotion" => sabotage.no_extension_on_promotion = true,
        "grant-before-commit" => sabotage.grant_before_commit = true,
        "semaphore-extra-slot" => sabotage.semaphore_extra_slot = true,
        other => {
            return Err(tenure_server::ServerError::Config(format!(
                "TENURE_CHAOS_CONTROL={other}: not a control (renew-without-read-index, \
                 no-extension-on-promotion, grant-before-commit, semaphore-extra-slot)"
            ))
            .into());
        }
    }
    Ok(sabotage)
}

/// Resolves the configuration, opens the data directory, serves until a
/// signal, then stops accepting, stops raft and flushes the disk.
pub fn run(args: ServeArgs) -> Result<(), Error> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let config = args.settings().over(file).resolve()?;
    // Beyond loopback, bytes cross a network: TLS, and credentials, or
    // nothing. Without an auth file, callers are whoever they say they are.
    let on_loopback = |addr: &str| {
        addr.parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| addr.starts_with("localhost:"))
    };
    let loopback =
        on_loopback(&config.listen) && config.http_listen.as_deref().is_none_or(on_loopback);
    if args.unsafe_no_fsync && !loopback {
        return Err(tenure_server::ServerError::Config(
            "--unsafe-no-fsync is for measurements on loopback only".into(),
        )
        .into());
    }
    if config.tls.is_none() && !loopback {
        return Err(tenure_server::ServerError::Config(format!(
            "without TLS a node listens on loopback only (got {}{}); give it --tls-cert, --tls-key and --tls-ca \
             (`tenure certs init` makes a development set)",
            config.listen,
            config.http_listen.as_deref().map(|h| format!(", HTTP {h}")).unwrap_or_default()
        ))
        .into());
    }
    if config.auth_file.is_none() && !loopback {
        return Err(tenure_server::ServerError::Config(format!(
            "without --auth-file a node listens on loopback only (got {}); give it an auth file",
            config.listen
        ))
        .into());
    }
    let sabotage = chaos_control(std::env::var("TENURE_CHAOS_CONTROL").ok().as_deref())?;
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    let connector = match &tls {
        Some(tls) => TcpConnector::with_tls(tls.client_config()),
        None => TcpConnector::default(),
    };
    let http_tls = tls.as_ref().map(Tls::http_config);
    let http_listen = config.http_listen.clone();
    crate::logs::set_node(config.id);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Before anything else: a SIGHUP during start-up must not kill the node.
        let hangup = hangup();
        // Metrics are recorded from the start, and served with the HTTP port.
        let metrics = match &http_listen {
            Some(_) => Some(tenure_server::metrics::install()?),
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir)?;
        let cache_bytes = config.cache_mb.saturating_mul(1 << 20);
        let disk = FileDisk::open_with(&config.data_dir, !args.unsafe_no_fsync, cache_bytes)
            .map_err(tenure_server::ServerError::from)?;
        if args.unsafe_no_fsync {
            tracing::warn!("--unsafe-no-fsync: acknowledged writes and votes are NOT safe from a power loss");
        }
        let listener = TcpListener::bind(&config.listen).await.map_err(|source| {
            tenure_server::ServerError::Listen {
                addr: config.listen.clone(),
                source,
            }
        })?;
        // The name resolved: check what the socket really bound to.
        let bound_loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
        if !bound_loopback && (config.tls.is_none() || config.auth_file.is_none()) {
            return Err(tenure_server::ServerError::Config(format!(
                "{} bound beyond loopback: a node there needs --tls-cert, --tls-key, --tls-ca and --auth-file",
                config.listen
            ))
            .into());
        }
        tracing::info!(id = config.id, listen = %config.listen, data_dir = %config.data_dir.display(), "serving");
        if config.auth_file.is_none() {
            let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
            tracing::warn!(
                loopback,
                "no --auth-file: callers are trusted by their x-owner-id metadata, and as admin by x-role: ADMIN; \
                 keep this node on loopback or a trusted network"
            );
        }
        let node = Node::start_with(
            config,
            disk.clone(),
            connector,
            limited(listener),
            signal(),
            tenure_server::Harness {
                sabotage,
                ..tenure_server::Harness::default()
            },
        )
        .await?;
        tokio::spawn(reload_on_hangup(node.auth.clone(), hangup));
        tokio::spawn(crate::logs::follow_term(node.raft.clone()));
        if let Some(addr) = &http_listen {
            let http = TcpListener::bind(addr).await.map_err(|source| {
                tenure_server::ServerError::Listen {
                    addr: addr.clone(),
                    source,
                }
            })?;
            let bound_loopback = http.local_addr().is_ok_and(|a| a.ip().is_loopback());
            if !bound_loopback && http_tls.is_none() {
                return Err(tenure_server::ServerError::Config(format!(
                    "HTTP {addr} bound beyond loopback: it needs --tls-cert, --tls-key and --tls-ca"
                ))
                .into());
            }
            tracing::info!(http = %addr, tls = http_tls.is_some(), "serving HTTP");
            let router = match metrics {
                Some(handle) => node.http.clone().merge(tenure_server::http::metrics_router(
                    handle,
                    node.raft.clone(),
                    node.table.clone(),
                )),
                None => node.http.clone(),
            };
            tokio::spawn(serve_http(http, router, http_tls));
        }
        node.wait().await?;
        disk.flush().await.map_err(tenure_server::ServerError::from)?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

/// Connections a node holds open at once; one more is closed as soon as it
/// is accepted (and logged), so a flood of idle sockets cannot exhaust the
/// node's file descriptors.
pub const MAX_CONNECTIONS: usize = 4096;

/// Connections one remote address (an IPv6 /64) may hold, so that one host
/// cannot take every slot; loopback is not bounded (the benchmark runs
/// hundreds of clients from it).
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

type Counts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// A remote address's share of the connections, given back on drop.
struct Share {
    counts: Counts,
    address: std::net::IpAddr,
}

impl Share {
    fn take(counts: &Counts, address: std::net::IpAddr) -> Option<Share> {
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(address).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Share {
            counts: Arc::clone(counts),
            address,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// The accepted connections, each holding one of [`MAX_CONNECTIONS`]
/// slots, with TCP_NODELAY: small replies (raft acks, lock answers) must
/// not wait for Nagle's algorithm to meet a delayed ACK (40 ms stalls).
fn limited(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<Limited>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let counts = Counts::default();
    TcpListenerStream::new(listener).filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(io) => {
            let peer = io.peer_addr().ok().map(|a| a.ip());
            let share = match peer.filter(|ip| !ip.is_loopback()) {
                Some(ip) => {
                    let address = tenure_server::auth::address_key(ip);
                    let Some(share) = Share::take(&counts, address) else {
                        tracing::warn!(%address, max = MAX_CONNECTIONS_PER_ADDRESS, "too many connections from one address: closed a new one");
                        return None;
                    };
                    Some(share)
                }
                None => None,
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(?peer, max = MAX_CONNECTIONS, "too many connections: closed a new one");
                return None;
            };
            if let Err(e) = io.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY on a connection");
            }
            Some(Ok(Limited {
                io,
                _permit: permit,
                _share: share,
            }))
        }
    })
}

/// A connection that holds a connection slot until it closes.
struct Limited {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    _share: Option<Share>,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves the HTTP port: over TLS when the node has it (each handshake in
/// its own task, within the handshake timeout), else plain.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) {
    let Some(tls) = tls else {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "the HTTP port stopped");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(
                tenure_server::tls::HANDSHAKE_TIMEOUT,
                acceptor.accept(stream),
            );
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // The caller's address, as the plain port gives it, and the
            // certificate chain it presented (a client certificate, with
            // --client-ca), for the gateway to identify it by.
            let mut router = router.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            if let Some(chain) = stream.get_ref().1.peer_certificates() {
                let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
                router = router.layer(axum::Extension(tenure_server::tls::HttpPeerChain(
                    std::sync::Arc::new(chain),
                )));
            }
            let service = hyper_util::service::TowerToHyperService::new(router);
            let served =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
}

/// The SIGHUP stream, installed early (the default action would end the
/// process).
#[cfg(unix)]
fn hangup() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| {
            tracing::warn!(error = %e, "no SIGHUP handler: the auth file reloads only on restart");
        })
        .ok()
}

#[cfg(not(unix))]
fn hangup() -> Option<()> {
    None
}

/// Rereads the auth file on each SIGHUP: tokens rotate without a restart;
/// a broken file leaves the one in force (and the log says why).
#[cfg(unix)]
async fn reload_on_hangup(auth: Auth, hangup: Option<tokio::signal::unix::Signal>) {
    let Some(mut hangup) = hangup else {
        return;
    };
    while hangup.recv().await.is_some() {
        if auth.enforced() {
            // Success and failure are both logged by `reload`.
            let _ = auth.reload();
        } else {
            tracing::info!("SIGHUP: no auth file to reload");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_auth: Auth, _hangup: Option<()>) {}

/// Resolves on SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received: shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn_sim_009_a_chaos_control_is_refused_unless_the_build_was_made_for_it() {
        assert_eq!(
            chaos_control(None).ok(),
            Some(tenure_server::Sabotage::default())
        );
        assert_eq!(
            chaos_control(Some("")).ok(),
            Some(tenure_server::Sabotage::default())
        );
        let asked = chaos_control(Some("grant-before-commit"));
        if cfg!(feature = "chaos-controls") {
            assert!(asked.is_ok_and(|s| s.grant_before_commit));
        } else {
            let e = asked.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("no negative controls"), "{e}");
        }
        assert!(chaos_control(Some("no-such-control")).is_err());
    }
}
