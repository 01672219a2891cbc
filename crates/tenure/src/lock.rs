//! `tenure lock …`: take, keep, give up and look at locks from the shell.
//!
//! The caller's identity is `--owner` (or `TENURE_OWNER`), sent as the
//! `x-owner-id` metadata the development mode trusts. Any endpoint will do:
//! followers forward to the leader.

use std::io::Write;
use std::process::ExitStatus;
use std::time::Duration;

use clap::{Args, Subcommand};
use tenure_proto::v1;
use tenure_proto::v1::admin_client::AdminClient;
use tenure_proto::v1::lock_client::LockClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::cluster::{Endpoints, admin_error, channel};
use crate::error::Error;

/// `tenure lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The tenant.
    #[arg(long, env = "TENURE_TENANT", default_value = "default", global = true)]
    tenant: String,
    /// Who you are (the lease owner) on a cluster without an auth file.
    #[arg(long, env = "TENURE_OWNER", default_value = "cli", global = true)]
    owner: String,
    /// Your bearer token, for a cluster with an auth file.
    #[arg(long, env = "TENURE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: LockCommand,
}

#[derive(Debug, Subcommand)]
enum LockCommand {
    /// Take a lock (waiting up to --wait-ms for it); prints the lease and its fencing token.
    Acquire {
        /// The lock's key.
        key: String,
        /// The lease's TTL, ms.
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
        /// How long to wait in the queue if the lock is held, ms (0: don't).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// Idempotency key; a retry with the same id gets the same lease.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Renew a lease (keeping its TTL, or setting a new one).
    Renew {
        /// The lease id.
        lease: String,
        /// A new TTL, ms (0: keep the TTL).
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
    },
    /// Give a lease up.
    Release {
        /// The lease id.
        lease: String,
        /// Idempotency key.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show a lock (linearizable unless --stale).
    Get {
        /// The lock's key.
        key: String,
        /// Read this node's copy, possibly behind.
        #[arg(long)]
        stale: bool,
    },
    /// List locks by key prefix.
    List {
        /// Only keys with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Follow lock events (the audit stream) until interrupted.
    Watch {
        /// Only keys with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Resume from this audit sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Free a lock whoever holds it (admin), with a reason.
    ForceRelease {
        /// The lock's key.
        key: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Only if this lease still holds it (makes a retry harmless).
        #[arg(long)]
        lease: Option<String>,
    },
    /// Hold a lock while a command runs: it gets TENURE_FENCING_TOKEN and
    /// TENURE_LEASE_ID, is stopped if the lease is lost, and its exit status
    /// is this command's.
    Run {
        /// The lock's key.
        key: String,
        /// The lease's TTL, ms (kept alive every third of it).
        #[arg(long, default_value_t = 15_000)]
        ttl_ms: u64,
        /// How long to wait for the lock, ms.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// Sends a call again while the cluster answers with a retryable reason (a
/// leader change in progress), for up to ten seconds; the request is the
/// same every time (same request_id), so a retry never acts twice.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Error>>,
{
    let start = tokio::time::Instant::now();
    loop {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(Error::Status(s))
                if start.elapsed() < Duration::from_secs(10)
                    && tenure_proto::convert::reason_of(&s).is_some_and(|r| r.is_retryable()) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Error::Status(s)) => return Err(admin_error(s)),
            Err(e) => return Err(e),
        }
    }
}

fn request_id() -> String {
    format!("cli-{:016x}", rand::random::<u64>())
}

/// Who the CLI calls as: the owner name, and a bearer token for a cluster
/// with an auth file.
pub(crate) struct Who {
    pub(crate) owner: String,
    pub(crate) token: Option<String>,
}

fn owned<T>(who: &Who, body: T) -> Result<tonic::Request<T>, Error> {
    let owner = who.owner.as_str();
    let mut r = tonic::Request::new(body);
    if let Some(token) = &who.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::Cluster("the token is not valid metadata".into()))?;
        r.metadata_mut().insert("authorization", value);
    }
    let value = owner
        .parse()
        .map_err(|_| Error::Cluster(format!("owner {owner:?} is not valid metadata")))?;
    r.metadata_mut().insert("x-owner-id", value);
    Ok(r)
}

fn lease_json(l: &v1::Lease) -> serde_json::Value {
    let state = v1::LeaseState::try_from(l.state).map_or("UNKNOWN", |s| s.as_str_name());
    serde_json::json!({
        "lease_id": l.lease_id, "tenant_id": l.tenant_id, "lock_key": l.lock_key, "owner_id": l.owner_id,
        "state": state.trim_start_matches("LEASE_STATE_"), "fencing_token": l.fencing_token, "ttl_ms": l.ttl_ms,
        "version": l.version, "expires_in_ms": l.expires_in_ms,
    })
}

fn print_lease(out: &mut impl Write, json: bool, l: &v1::Lease) -> Result<(), Error> {
    if json {
        writeln!(out, "{}", lease_json(l))?;
    } else {
        let j = lease_json(l);
        writeln!(
            out,
            "lease {} on {}/{}: {} token {} ttl {} ms, expires in {} ms",
            l.lease_id,
            l.tenant_id,
            l.lock_key,
            j["state"].as_str().unwrap_or("?"),
            l.fencing_token,
            l.ttl_ms,
            l.expires_in_ms
        )?;
    }
    Ok(())
}

fn lock_json(s: &v1::LockState) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": s.tenant_id, "lock_key": s.lock_key, "held": s.held,
        "active_lease": s.active_lease.as_ref().map(lease_json), "last_fencing_token": s.last_fencing_token,
        "waiters": s.waiters, "lock_delayed": s.lock_delayed,
    })
}

fn print_lock(out: &mut impl Write, json: bool, s: &v1::LockState) -> Result<(), Error> {
    if json {
        writeln!(out, "{}", lock_json(s))?;
    } else {
        let holder = s.active_lease.as_ref().map_or("free".to_owned(), |l| {
            format!(
                "held by {} (lease {}, token {})",
                l.owner_id, l.lease_id, l.fencing_token
            )
        });
        writeln!(
            out,
            "{}/{}: {holder}; last token {}, {} waiting{}",
            s.tenant_id,
            s.lock_key,
            s.last_fencing_token,
            s.waiters,
            if s.lock_delayed {
                ", in lock-delay"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// A client on the first endpoint that accepts a connection.
async fn connect(endpoints: &str) -> Result<Channel, Error> {
    let mut last = String::from("no endpoints given");
    for addr in endpoints
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let c = channel(addr)?;
        let mut health = LockClient::new(c.clone());
        let probe = v1::GetRequest {
            tenant_id: "probe".into(),
            lock_key: "probe".into(),
            consistency: v1::Consistency::Stale as i32,
        };
        match health.get(probe).await {
            Ok(_) => return Ok(c),
            Err(e) => last = format!("{addr}: {}", e.message()),
        }
    }
    Err(Error::Cluster(format!("no endpoint answered ({last})")))
}

/// Runs a lock command, printing to `out`; returns the exit status of a
/// `run` command's child.
pub fn run(args: LockArgs, out: &mut impl Write) -> Result<Option<ExitStatus>, Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let channel = connect(&args.endpoints.endpoints).await?;
        let mut lock = LockClient::new(channel.clone());
        let owner = Who { owner: args.owner.clone(), token: args.token.clone() };
        let (tenant, json) = (args.tenant.clone(), args.json);
        match args.command {
            LockCommand::Acquire { key, ttl_ms, wait_ms, request_id: rid } => {
                let req = v1::AcquireRequest { tenant_id: tenant, lock_key: key, owner_id: String::new(), request_id: rid.unwrap_or_else(request_id), ttl_ms, wait_timeout_ms: wait_ms };
                let l = retrying(|| { let (mut c, r) = (lock.clone(), owned(&owner, req.clone())); async move { c.acquire(r?).await.map_err(Error::from) } }).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Renew { lease, ttl_ms } => {
                let req = v1::RenewRequest { tenant_id: tenant, lease_id: lease, owner_id: String::new(), request_id: request_id(), ttl_ms };
                let l = retrying(|| { let (mut c, r) = (lock.clone(), owned(&owner, req.clone())); async move { c.renew(r?).await.map_err(Error::from) } }).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Release { lease, request_id: rid } => {
                let req = v1::ReleaseRequest { tenant_id: tenant, lease_id: lease, owner_id: String::new(), request_id: rid.unwrap_or_else(request_id) };
                let l = retrying(|| { let (mut c, r) = (lock.clone(), owned(&owner, req.clone())); async move { c.release(r?).await.map_err(Error::from) } }).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Get { key, stale } => {
                let consistency = if stale { v1::Consistency::Stale } else { v1::Consistency::Linearizable } as i32;
                let req = v1::GetRequest { tenant_id: tenant, lock_key: key, consistency };
                let s = retrying(|| { let (mut c, r) = (lock.clone(), owned(&owner, req.clone())); async move { c.get(r?).await.map_err(Error::from) } }).await?;
                print_lock(out, json, &s)?;
            }
            LockCommand::List { prefix, limit } => {
                let req = v1::ListRequest { tenant_id: tenant, key_prefix: prefix, page_size: limit, page_token: String::new(), consistency: 0 };
                let r = retrying(|| { let (mut c, r) = (lock.clone(), owned(&owner, req.clone())); async move { c.list(r?).await.map_err(Error::from) } }).await?;
                for s in &r.locks {
                    print_lock(out, json, s)?;
                }
            }
            LockCommand::Watch { prefix, from, count } => {
                let req = v1::WatchRequest { tenant_id: tenant, key_prefix: prefix, from_sequence: from, include_all_tenants: false };
                let mut events = lock.watch(owned(&owner, req)?).await.map_err(admin_error)?.into_inner();
                let mut seen = 0;
                while let Some(e) = events.next().await {
                    let e = e.map_err(admin_error)?;
                    let kind = v1::AuditKind::try_from(e.kind).map_or("UNKNOWN", |k| k.as_str_name()).trim_start_matches("AUDIT_KIND_").to_owned();
                    if json {
                        writeln!(out, "{}", serde_json::json!({"sequence": e.sequence, "kind": kind, "tenant_id": e.tenant_id, "lock_key": e.lock_key, "lease_id": e.lease_id, "owner_id": e.owner_id, "fencing_token": e.fencing_token, "actor": e.actor, "detail": e.detail, "gap_before": e.gap_before}))?;
                    } else {
                        writeln!(out, "#{} {kind} {}/{} lease {} token {} by {}", e.sequence, e.tenant_id, e.lock_key, e.lease_id, e.fencing_token, e.actor)?;
                    }
                    out.flush()?;
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        break;
                    }
                }
            }
            LockCommand::ForceRelease { key, reason, lease } => {
                let req = v1::ForceReleaseRequest { tenant_id: tenant, lock_key: key, reason, lease_id: lease.unwrap_or_default() };
                let admin = AdminClient::new(channel);
                let s = retrying(|| { let (mut c, r) = (admin.clone(), owned(&owner, req.clone())); async move { c.force_release(r?).await.map_err(Error::from) } }).await?;
                print_lock(out, json, &s)?;
            }
            LockCommand::Run { key, ttl_ms, wait_ms, command } => {
                let endpoints = args.endpoints.endpoints.clone();
                let caller = Caller { endpoints: &endpoints, tenant: &tenant, owner: &owner };
                return hold_while(lock, caller, &key, ttl_ms, wait_ms, &command).await.map(Some);
            }
        }
        Ok(None)
    })
}

type KeepAlive = (
    tokio::sync::mpsc::Sender<v1::KeepAliveRequest>,
    tonic::Streaming<v1::KeepAliveResponse>,
);

/// Opens a keep-alive stream on the leader: the hinted address first, then
/// every endpoint (a follower answers NOT_LEADER with the leader's address).
async fn open_keep_alive(
    owner: &Who,
    hint: Option<String>,
    endpoints: &str,
) -> Result<KeepAlive, Error> {
    let mut candidates: Vec<String> = hint.into_iter().collect();
    candidates.extend(
        endpoints
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty()),
    );
    let mut last = String::from("no endpoint");
    let mut i = 0;
    while i < candidates.len() {
        let addr = candidates[i].clone();
        i += 1;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        match LockClient::new(channel(&addr)?)
            .keep_alive(owned(owner, stream)?)
            .await
        {
            Ok(r) => return Ok((tx, r.into_inner())),
            Err(e) => {
                if let Some(leader) = tenure_proto::convert::leader_of(&e) {
                    candidates.insert(i, leader);
                }
                last = format!("{addr}: {}", e.message());
            }
        }
        if i > 8 {
            break;
        }
    }
    Err(Error::Cluster(format!("no keep-alive stream ({last})")))
}

/// Takes the lock, runs `command` with the token in its environment, keeps
/// the lease alive through the leader (following it when it changes), stops
/// the command if the lease is lost or its client-side deadline passes, and
/// releases the lock when the command ends.
/// Who runs `lock run`, and where.
struct Caller<'a> {
    endpoints: &'a str,
    tenant: &'a str,
    owner: &'a Who,
}

async fn hold_while(
    mut lock: LockClient<Channel>,
    caller: Caller<'_>,
    key: &str,
    ttl_ms: u64,
    wait_ms: u64,
    command: &[String],
) -> Result<ExitStatus, Error> {
    let Caller {
        endpoints,
        tenant,
        owner,
    } = caller;
    let sent = tokio::time::Instant::now();
    let req = v1::AcquireRequest {
        tenant_id: tenant.into(),
        lock_key: key.into(),
        owner_id: String::new(),
        request_id: request_id(),
        ttl_ms,
        wait_timeout_ms: wait_ms,
    };
    let granted = lock
        .acquire(owned(owner, req)?)
        .await
        .map_err(admin_error)?;
    let hint = granted
        .metadata()
        .get("tenure-leader")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let lease = granted.into_inner();
    let release = |mut lock: LockClient<Channel>| {
        let rel = v1::ReleaseRequest {
            tenant_id: tenant.into(),
            lease_id: lease.lease_id.clone(),
            owner_id: String::new(),
            request_id: request_id(),
        };
        async move {
            if let Ok(r) = owned(owner, rel) {
                let _ = lock.release(r).await;
            }
        }
    };
    // The stream first: a command never runs without a way to keep its lease.
    let (mut tx, mut answers) = match open_keep_alive(owner, hint.clone(), endpoints).await {
        Ok(k) => k,
        Err(e) => {
            release(lock).await;
            return Err(e);
        }
    };
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| Error::Cluster("no command given".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .env("TENURE_FENCING_TOKEN", lease.fencing_token.to_string())
        .env("TENURE_LEASE_ID", &lease.lease_id)
        .env("TENURE_LOCK_KEY", key)
        .spawn()?;
    // The client's own deadline: send time + ttl × (1 − 10 % drift).
    let mut deadline = sent + Duration::from_millis(ttl_ms * 9 / 10);
    let every = Duration::from_millis((ttl_ms / 3).max(1));
    let mut pending: Option<tokio::time::Instant> = None;
    let mut next_send = tokio::time::Instant::now() + every;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep_until(next_send), if pending.is_none() => {
                pending = Some(tokio::time::Instant::now());
                let ka = v1::KeepAliveRequest { tenant_id: tenant.into(), lease_id: lease.lease_id.clone(), owner_id: String::new(), client_seq: 0 };
                let _ = tx.send(ka).await;
            }
            answer = answers.next() => match answer {
                Some(Ok(a)) if a.alive => {
                    if let Some(s) = pending.take() {
                        deadline = s + Duration::from_millis(a.ttl_ms * 9 / 10);
                    }
                    next_send = tokio::time::Instant::now() + every;
                }
                Some(Ok(a)) => {
                    eprintln!("tenure: lease {} lost ({}); stopping the command", lease.lease_id, a.reason);
                    let _ = child.kill().await;
                    break child.wait().await?;
                }
                _ => {
                    // The stream broke (a leader change): find the new leader
                    // while the deadline allows.
                    pending = None;
                    match open_keep_alive(owner, None, endpoints).await {
                        Ok((t, a)) => {
                            tx = t;
                            answers = a;
                            next_send = tokio::time::Instant::now();
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("tenure: lease {} passed its deadline unrenewed; stopping the command", lease.lease_id);
                let _ = child.kill().await;
                break child.wait().await?;
            }
        }
    };
    drop(tx);
    release(lock).await;
    Ok(status)
}
