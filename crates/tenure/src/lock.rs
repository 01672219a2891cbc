//! `tenure lock …`: take, keep, give up and look at locks from the shell.
//!
//! Every command calls the cluster through tenure-client, as any Rust
//! program would: the caller is `--token` (or `TENURE_TOKEN`) on a cluster
//! with an auth file, and `--owner` (or `TENURE_OWNER`, sent as the
//! `x-owner-id` metadata the development mode trusts) on one without. Any
//! endpoint will do: the client follows the leader, and retries a refusal
//! that may pass (a leader change) with the same request_id.

use std::io::Write;
use std::process::ExitStatus;
use std::time::Duration;

use clap::{Args, Subcommand};
use tenure_client::{AcquireOptions, Client, Lease, LockState, Mode, WatchOptions};
use tenure_proto::convert;

use crate::cluster::{Endpoints, connect};
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
        #[command(flatten)]
        mode: ModeArgs,
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
        #[command(flatten)]
        mode: ModeArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// How to hold a lock: exclusive unless `--shared` or `--limit N`.
#[derive(Clone, Copy, Debug, Args)]
struct ModeArgs {
    /// Hold the lock SHARED, beside other shared holders (a read lock).
    #[arg(long, conflicts_with = "limit")]
    shared: bool,
    /// Hold one of N slots of the semaphore KEY (every holder must name the same N).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
}

impl ModeArgs {
    fn mode(self) -> Mode {
        Mode::from_parts(self.shared, self.limit.unwrap_or(0))
    }
}

fn lease_json(l: &Lease) -> serde_json::Value {
    let v = &l.view;
    let state = convert::lease_state(v.state).as_str_name();
    serde_json::json!({
        "lease_id": v.id.to_string(), "tenant_id": &*v.tenant, "lock_key": &*v.key, "owner_id": &*v.owner,
        "state": state.trim_start_matches("LEASE_STATE_"), "fencing_token": v.token, "ttl_ms": v.ttl_ms,
        "version": v.version, "expires_in_ms": l.expires_in_ms, "mode": v.mode.as_str(),
        "limit": v.mode.limit(),
    })
}

fn print_lease(out: &mut impl Write, json: bool, l: &Lease) -> Result<(), Error> {
    let j = lease_json(l);
    if json {
        writeln!(out, "{j}")?;
    } else {
        let v = &l.view;
        let mode = match v.mode {
            Mode::Exclusive => String::new(),
            m => format!(" {m}"),
        };
        writeln!(
            out,
            "lease {} on {}/{}: {}{mode} token {} ttl {} ms, expires in {} ms",
            v.id,
            v.tenant,
            v.key,
            j["state"].as_str().unwrap_or("?"),
            v.token,
            v.ttl_ms,
            l.expires_in_ms
        )?;
    }
    Ok(())
}

fn lock_json(s: &LockState) -> serde_json::Value {
    let v = &s.view;
    let active = v.active.as_ref().map(|l| {
        lease_json(&Lease {
            view: l.clone(),
            expires_in_ms: s.expires_in_ms,
        })
    });
    serde_json::json!({
        "tenant_id": &*v.tenant, "lock_key": &*v.key, "held": v.active.is_some(),
        "active_lease": active, "last_fencing_token": v.last_token,
        "waiters": v.waiters, "lock_delayed": v.delayed,
        "holders": s.holders.iter().map(lease_json).collect::<Vec<_>>(), "limit": v.limit,
    })
}

fn print_lock(out: &mut impl Write, json: bool, s: &LockState) -> Result<(), Error> {
    if json {
        writeln!(out, "{}", lock_json(s))?;
    } else {
        let v = &s.view;
        let holder = match v.holders.as_slice() {
            [] => "free".to_owned(),
            [l] if l.mode == Mode::Exclusive => {
                format!("held by {} (lease {}, token {})", l.owner, l.id, l.token)
            }
            many => {
                let kind = match v.limit {
                    0 => "shared".to_owned(),
                    n => format!("semaphore {}/{n}", many.len()),
                };
                let who: Vec<String> = many
                    .iter()
                    .map(|l| format!("{} (lease {}, token {})", l.owner, l.id, l.token))
                    .collect();
                format!("held {kind} by {}", who.join(", "))
            }
        };
        writeln!(
            out,
            "{}/{}: {holder}; last token {}, {} waiting{}",
            v.tenant,
            v.key,
            v.last_token,
            v.waiters,
            if v.delayed { ", in lock-delay" } else { "" }
        )?;
    }
    Ok(())
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Runs a lock command, printing to `out`; returns the exit status of a
/// `run` command's child.
pub fn run(args: LockArgs, out: &mut impl Write) -> Result<Option<ExitStatus>, Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = connect(
            &args.endpoints,
            &args.tenant,
            &args.owner,
            args.token.as_deref(),
            matches!(args.command, LockCommand::ForceRelease { .. }),
        )
        .await?;
        let json = args.json;
        match args.command {
            LockCommand::Acquire {
                key,
                ttl_ms,
                wait_ms,
                request_id,
                mode,
            } => {
                let options = AcquireOptions {
                    wait: ms(wait_ms),
                    request_id,
                    mode: mode.mode(),
                };
                let l = client.lease(&key, ms(ttl_ms), options).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Renew { lease, ttl_ms } => {
                let ttl = (ttl_ms > 0).then(|| ms(ttl_ms));
                let l = client.renew(&lease, ttl).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Release { lease, request_id } => {
                let l = client.release(&lease, request_id.as_deref()).await?;
                print_lease(out, json, &l)?;
            }
            LockCommand::Get { key, stale } => {
                let s = client.get_with(&key, stale).await?;
                print_lock(out, json, &s)?;
            }
            LockCommand::List { prefix, limit } => {
                let page = client.list(&prefix, limit, None).await?;
                for s in &page.locks {
                    print_lock(out, json, s)?;
                }
            }
            LockCommand::Watch {
                prefix,
                from,
                count,
            } => {
                let options = WatchOptions {
                    prefix,
                    from_sequence: from,
                    all_tenants: false,
                };
                watch(&client, options, count, json, out).await?;
            }
            LockCommand::ForceRelease { key, reason, lease } => {
                let s = client
                    .force_release(&key, &reason, lease.as_deref())
                    .await?;
                print_lock(out, json, &s)?;
            }
            LockCommand::Run {
                key,
                ttl_ms,
                wait_ms,
                mode,
                command,
            } => {
                let options = AcquireOptions::waiting(ms(wait_ms)).in_mode(mode.mode());
                return hold_while(&client, &key, ms(ttl_ms), options, &command)
                    .await
                    .map(Some);
            }
        }
        Ok(None)
    })
}

/// Prints the watched events as they come, until `count` of them.
async fn watch(
    client: &Client,
    options: WatchOptions,
    count: Option<u64>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Error> {
    let mut events = client.watch(options).await?;
    let mut seen = 0;
    while let Some(w) = events.next().await {
        let w = w?;
        let e = &w.event;
        let kind = convert::audit_kind(e.kind)
            .as_str_name()
            .trim_start_matches("AUDIT_KIND_")
            .to_owned();
        let lease = e.lease_id.map(|id| id.to_string()).unwrap_or_default();
        if json {
            let line = serde_json::json!({
                "sequence": e.seq, "kind": kind, "tenant_id": &*e.tenant, "lock_key": &*e.key,
                "lease_id": lease, "owner_id": e.owner.as_deref().unwrap_or_default(),
                "fencing_token": e.token, "actor": &*e.actor, "detail": e.detail.as_deref().unwrap_or_default(),
                "gap_before": w.gap_before, "mode": e.mode.as_str(), "limit": e.mode.limit(),
                "holders": e.holders.iter().map(|h| serde_json::json!({
                    "lease_id": h.lease_id.to_string(), "owner_id": &*h.owner,
                    "fencing_token": h.token, "mode": h.mode.as_str(),
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{line}")?;
        } else {
            if w.gap_before {
                writeln!(
                    out,
                    "# events before #{} are no longer retained: some may be missing",
                    e.seq
                )?;
            }
            writeln!(
                out,
                "#{} {kind} {}/{} lease {lease} token {} by {}",
                e.seq, e.tenant, e.key, e.token, e.actor
            )?;
        }
        out.flush()?;
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

/// Takes the lock, runs `command` with the token in its environment, keeps
/// the lease alive through the client's keep-alive stream (which follows
/// the leader), stops the command if the lease is lost or its client-side
/// deadline passes, and releases the lock when the command ends.
async fn hold_while(
    client: &Client,
    key: &str,
    ttl: Duration,
    options: AcquireOptions,
    command: &[String],
) -> Result<ExitStatus, Error> {
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| Error::Cluster("no command given".into()))?;
    let guard = client.acquire_with(key, ttl, options).await?;
    let mut child = match tokio::process::Command::new(program)
        .args(rest)
        .env("TENURE_FENCING_TOKEN", guard.fencing_token().to_string())
        .env("TENURE_LEASE_ID", guard.lease_id())
        .env("TENURE_LOCK_KEY", key)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = guard.release().await;
            return Err(e.into());
        }
    };
    let status = tokio::select! {
        status = child.wait() => status?,
        () = guard.lost() => {
            match guard.lost_reason() {
                Some(lost) => eprintln!("tenure: lease {} lost ({}); stopping the command", guard.lease_id(), lost.reason),
                None => eprintln!("tenure: lease {} passed its deadline unrenewed; stopping the command", guard.lease_id()),
            }
            let _ = child.kill().await;
            child.wait().await?
        }
    };
    if let Err(e) = guard.release().await {
        tracing::debug!(error = %e, "release after the command failed");
    }
    Ok(status)
}
