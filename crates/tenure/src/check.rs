//! `tenure check history FILE` and `tenure check audit FILE`: the checker
//! of the `tenure-check` crate on a file (or `-` for stdin).
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
    let report = match &args.command {
        CheckCommand::History { file, max_steps } => tenure_check::check_history(
            &read(file)?,
            tenure_check::Limits {
                max_steps_per_key: *max_steps,
            },
        ),
        CheckCommand::Audit { file } => tenure_check::check_audit(&read(file)?),
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
