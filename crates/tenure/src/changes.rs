//! `tenure changes export|follow`: the audit ledger as JSON lines.
//!
//! Both read every tenant's audit events through a resumable watch (the
//! admin role). An event line is
//! `{seq, at, at_ms, index, kind, tenant, key, lease, owner, token, actor,
//! reason}`; an export starts with a header line
//! `{type: "header", format: "tenure-changes/1", from_seq, to_seq,
//! source_node, exported_at}`. Sequences are gap-free: the only jump allowed
//! is the one a restore makes, right before its `RESTORE` event. A start
//! older than what the cluster keeps is refused with where the kept history
//! starts, never skipped in silence.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use tenure_client::{Client, WatchEvent, WatchOptions};
use tenure_core::{AuditEvent, AuditKind};
use tenure_proto::convert;
use tenure_server::clock::NodeClock;

use crate::cluster::{Endpoints, connect, partial_path, rename_synced};
use crate::error::Error;

/// The format of an export's header.
pub const CHANGES_FORMAT: &str = "tenure-changes/1";

/// `tenure changes`.
#[derive(Debug, Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// An admin's bearer token, for a cluster with an auth file.
    #[arg(long, env = "TENURE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: ChangesCommand,
}

#[derive(Debug, Subcommand)]
enum ChangesCommand {
    /// Write the audit ledger from `--from` to `--to` (default: the latest
    /// sequence now) as JSON lines, after a header; gap-free or refused.
    Export {
        /// The first sequence to write.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// The last sequence to write (default: the latest now).
        #[arg(long)]
        to: Option<u64>,
        /// The file (`-`: stdout); a file takes its name once written and
        /// synced.
        #[arg(long)]
        out: PathBuf,
    },
    /// Stream the audit ledger to stdout as JSON lines, keeping the last
    /// sequence written in `--state-file` after each batch: a consumer's
    /// cursor. With an existing state file it resumes after that sequence.
    /// Survives restarts of the cluster's nodes; stops cleanly (cursor
    /// saved) on SIGINT or SIGTERM.
    Follow {
        /// The first sequence to write when there is no state file yet
        /// (0: only events from now on).
        #[arg(long)]
        from: Option<u64>,
        /// Where the last sequence written is kept.
        #[arg(long)]
        state_file: PathBuf,
        /// Events written per batch at most (the cursor moves per batch).
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
}

/// One event as a line of the change log.
pub fn event_line(e: &AuditEvent) -> serde_json::Value {
    let kind = convert::audit_kind(e.kind)
        .as_str_name()
        .trim_start_matches("AUDIT_KIND_")
        .to_owned();
    let mut line = serde_json::json!({
        "seq": e.seq,
        "at": tenure_server::clock::rfc3339(e.at_ms),
        "at_ms": e.at_ms,
        "index": e.index,
        "kind": kind,
        "tenant": &*e.tenant,
        "key": &*e.key,
        "lease": e.lease_id.map(|id| id.to_string()),
        "owner": e.owner.as_deref(),
        "token": e.token,
        "actor": &*e.actor,
        "reason": e.detail.as_deref(),
    });
    // The mode of a lease not EXCLUSIVE (absent otherwise, so exports
    // of exclusive locks read as they always did).
    if e.mode != tenure_core::Mode::Exclusive {
        line["mode"] = e.mode.as_str().into();
        line["limit"] = e.mode.limit().into();
    }
    line
}

/// Keeps a stream gap-free: each event follows the last by one, or is a
/// restore's event after the jump a restore makes.
#[derive(Default)]
struct Sequence {
    last: Option<u64>,
}

/// What is wrong with the next event of a stream.
enum Broken {
    /// The node no longer keeps events before this one.
    Gap(u64),
    /// This sequence came after that one.
    Missing(u64, u64),
}

impl Broken {
    async fn refusal(self, client: &Client) -> Error {
        Error::Cluster(match self {
            Broken::Gap(seq) => format!(
                "events before sequence {seq} are no longer kept by the cluster ({}): refusing to skip them; start later",
                kept_from(client).await
            ),
            Broken::Missing(last, seq) => {
                format!("sequence {seq} after {last}: events are missing")
            }
        })
    }
}

impl Sequence {
    fn next(&mut self, w: &WatchEvent) -> Result<(), Broken> {
        let e = &w.event;
        if w.gap_before {
            return Err(Broken::Gap(e.seq));
        }
        if let Some(last) = self.last {
            let follows = e.seq == last + 1 || (e.kind == AuditKind::Restore && e.seq > last);
            if !follows {
                return Err(Broken::Missing(last, e.seq));
            }
        }
        self.last = Some(e.seq);
        Ok(())
    }
}

/// Where the kept history starts, as a node says.
async fn kept_from(client: &Client) -> String {
    match client.status().await {
        Ok(s) if s.audit_retained_from > 0 => {
            format!("its history starts at sequence {}", s.audit_retained_from)
        }
        Ok(_) => "it keeps no history yet".into(),
        Err(e) => format!("status: {e}"),
    }
}

async fn export(client: &Client, from: u64, to: Option<u64>, out: &Path) -> Result<String, Error> {
    let status = client.status().await?;
    let to = to.unwrap_or(status.audit_sequence);
    if from == 0 || from > to {
        return Err(Error::Cluster(format!(
            "nothing to export from {from} to {to}: --from must be at least 1 and at most --to"
        )));
    }
    if to > status.audit_sequence {
        return Err(Error::Cluster(format!(
            "--to {to} is beyond the cluster's latest sequence {}",
            status.audit_sequence
        )));
    }
    let header = serde_json::json!({
        "type": "header",
        "format": CHANGES_FORMAT,
        "from_seq": from,
        "to_seq": to,
        "source_node": status.node_id,
        "exported_at": tenure_server::clock::rfc3339(NodeClock::system().wall_ms()),
    });
    let mut lines = Vec::new();
    writeln!(lines, "{header}")?;
    let options = WatchOptions {
        from_sequence: from,
        all_tenants: true,
        ..WatchOptions::default()
    };
    let mut watch = client.watch(options).await?;
    let mut sequence = Sequence::default();
    let mut count = 0u64;
    while let Some(w) = watch.next().await {
        let w = w?;
        if w.event.seq > to {
            break;
        }
        if let Err(broken) = sequence.next(&w) {
            return Err(broken.refusal(client).await);
        }
        writeln!(lines, "{}", event_line(&w.event))?;
        count += 1;
        if w.event.seq == to {
            break;
        }
    }
    if out.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&lines)?;
        stdout.flush()?;
    } else {
        write_synced(out, &lines)?;
    }
    Ok(format!(
        "changes: {count} events, sequences {from}..={to}, from node {}",
        status.node_id
    ))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename,
/// then syncs the directory: the file is whole or absent.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let partial = partial_path(path);
    let mut f = std::fs::File::create(&partial)
        .map_err(|e| Error::Cluster(format!("{}: {e}", partial.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Cluster(format!("{}: {e}", partial.display())))?;
    rename_synced(&partial, path)
}

/// The sequence a state file holds; `None` when there is no file.
fn read_state(path: &Path) -> Result<Option<u64>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            Error::Cluster(format!(
                "{}: not a sequence number: {:?}",
                path.display(),
                text.trim()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Cluster(format!("{}: {e}", path.display()))),
    }
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM); the
/// handlers are installed before this returns.
pub(crate) fn stop_signal() -> Result<impl std::future::Future<Output = ()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn follow(
    client: &Client,
    from: Option<u64>,
    state_file: &Path,
    batch: usize,
) -> Result<(), Error> {
    let start = match (read_state(state_file)?, from) {
        (Some(last), _) => last + 1,
        (None, Some(from)) => from,
        (None, None) => {
            return Err(Error::Cluster(format!(
                "{} does not exist: give --from to start",
                state_file.display()
            )));
        }
    };
    let mut sequence = Sequence {
        last: start.checked_sub(1).filter(|s| *s > 0),
    };
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let mut stdout = std::io::stdout().lock();
    let mut next_from = start;
    let mut pending: Vec<WatchEvent> = Vec::new();
    'reopen: loop {
        let options = WatchOptions {
            from_sequence: next_from,
            all_tenants: true,
            ..WatchOptions::default()
        };
        let mut watch = tokio::select! {
            w = client.watch(options) => match w {
                Ok(w) => w,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "the cluster is not answering; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'reopen,
                        _ = &mut stop => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            },
            _ = &mut stop => return Ok(()),
        };
        loop {
            // A batch ends when it is full or the stream goes quiet.
            let quiet = tokio::time::sleep(Duration::from_millis(100));
            let event = tokio::select! {
                e = watch.next() => Some(e),
                _ = quiet, if !pending.is_empty() => None,
                _ = &mut stop => {
                    write_batch(&mut stdout, &mut pending, state_file)?;
                    return Ok(());
                }
            };
            match event {
                None => write_batch(&mut stdout, &mut pending, state_file)?,
                Some(None) => continue 'reopen,
                Some(Some(Ok(w))) => {
                    if let Err(broken) = sequence.next(&w) {
                        write_batch(&mut stdout, &mut pending, state_file)?;
                        return Err(broken.refusal(client).await);
                    }
                    next_from = w.event.seq + 1;
                    pending.push(w);
                    if pending.len() >= batch {
                        write_batch(&mut stdout, &mut pending, state_file)?;
                    }
                }
                Some(Some(Err(e))) if e.is_retryable() => {
                    write_batch(&mut stdout, &mut pending, state_file)?;
                    tracing::warn!(error = %e, "the watch broke; resuming");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'reopen,
                        _ = &mut stop => return Ok(()),
                    }
                }
                Some(Some(Err(e))) => {
                    write_batch(&mut stdout, &mut pending, state_file)?;
                    return Err(e.into());
                }
            }
        }
    }
}

/// Writes the batch to stdout, flushes it, then moves the cursor: a
/// sequence is in the state file only once its line is out.
fn write_batch(
    out: &mut impl Write,
    pending: &mut Vec<WatchEvent>,
    state_file: &Path,
) -> Result<(), Error> {
    let Some(last) = pending.last().map(|w| w.event.seq) else {
        return Ok(());
    };
    for w in pending.drain(..) {
        writeln!(out, "{}", event_line(&w.event))?;
    }
    out.flush()?;
    write_synced(state_file, format!("{last}\n").as_bytes())
}

/// Runs a changes command.
pub fn run(args: ChangesArgs, out: &mut impl Write) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = connect(&args.endpoints, "", "changes", args.token.as_deref(), true).await?;
        match args.command {
            ChangesCommand::Export {
                from,
                to,
                out: path,
            } => {
                let summary = export(&client, from, to, &path).await?;
                if path.as_os_str() == "-" {
                    eprintln!("{summary}");
                } else {
                    writeln!(out, "{summary}")?;
                }
            }
            ChangesCommand::Follow {
                from,
                state_file,
                batch,
            } => follow(&client, from, &state_file, batch.max(1)).await?,
        }
        Ok(())
    })
}
