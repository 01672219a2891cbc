//! `tenure check history FILE` and `tenure check audit FILE`: the checker
//! of the `tenure-check` crate on a file (or `-` for stdin); `tenure check
//! backup FILE`: a backup read back whole (tenure-core's reader).
//!
//! Exit status: 0 when every rule holds, 1 on a violation (or input that
//! cannot be read), 2 when no violation was found but the linearizability
//! search could not decide some key: inconclusive is never a pass.

use std::io::{Read as _, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::Error;

/// `tenure check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    command: CheckCommand,
    /// The report as JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Check a client history (NDJSON) for INV-1 mutual exclusion, INV-2
    /// fencing and INV-3 linearizability.
    History {
        /// The history file (`-`: stdin).
        file: PathBuf,
        /// Search steps per key before the key is reported inconclusive.
        #[arg(long, default_value_t = tenure_check::Limits::default().max_steps_per_key)]
        max_steps: u64,
    },
    /// Check a server audit stream (`tenure lock watch --json`, `tenure demo
    /// --json`): no sequence gaps, one ACTIVE lease per lock, tokens +1.
    Audit {
        /// The audit file (`-`: stdin).
        file: PathBuf,
    },
    /// Check a backup (`tenure cluster backup`): every line in order, the
    /// trailer's count and SHA-256, and the rebuilt table's digest against
    /// the header's. A damaged file is reported with the line at fault.
    Backup {
        /// The backup file (`-`: stdin).
        file: PathBuf,
    },
}

/// Checks a backup file: 0 when it is whole, 1 when it is not.
fn check_backup(file: &PathBuf, json: bool, out: &mut impl Write) -> Result<u8, Error> {
    let read = if file.as_os_str() == "-" {
        tenure_core::backup::read(std::io::BufReader::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Error::Cluster(format!("{}: {e}", file.display())))?;
        tenure_core::backup::read(std::io::BufReader::new(f))
    };
    match read {
        Ok(b) => {
            let h = &b.header;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"verdict": "pass", "header": h, "sha256": b.sha256})
                )?;
            } else {
                writeln!(out, "backup: pass ({})", h.format)?;
                writeln!(
                    out,
                    "  from node {} (term {}), applied index {}, audit sequence {}, taken {}",
                    h.source.source_node,
                    h.source.leader_term,
                    h.source.applied_index,
                    h.audit_sequence,
                    h.source.exported_at
                )?;
                writeln!(
                    out,
                    "  {} tenants, {} locks, {} leases ({} active, {} waiting), {} requests remembered",
                    h.counts.tenants,
                    h.counts.locks,
                    h.counts.leases,
                    h.counts.active,
                    h.counts.waiting,
                    h.counts.requests
                )?;
                writeln!(out, "  table digest {}", h.table_digest)?;
                writeln!(out, "  sha256 {}", b.sha256)?;
            }
            Ok(0)
        }
        Err(e) => {
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"verdict": "damaged", "line": e.line, "message": e.message})
                )?;
            } else {
                writeln!(out, "backup: damaged: {e}")?;
            }
            Ok(1)
        }
    }
}

fn read(file: &PathBuf) -> Result<String, Error> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| Error::Cluster(format!("{}: {e}", file.display())))?;
    }
    Ok(text)
}

/// Runs the check and answers the exit status.
pub fn run(args: CheckArgs, out: &mut impl Write) -> Result<u8, Error> {
    if let CheckCommand::Backup { file } = &args.command {
        return check_backup(file, args.json, out);
    }
    let report = match &args.command {
        CheckCommand::History { file, max_steps } => tenure_check::check_history(
            &read(file)?,
            tenure_check::Limits {
                max_steps_per_key: *max_steps,
            },
        ),
        CheckCommand::Audit { file } => tenure_check::check_audit(&read(file)?),
        CheckCommand::Backup { .. } => unreachable!("checked above"),
    }
    .map_err(|e| Error::Cluster(format!("cannot check: {e}")))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(match report.verdict() {
        "pass" => 0,
        "violation" => 1,
        _ => 2,
    })
}
