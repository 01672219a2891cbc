//! The command line: clap derive, one variant per subcommand. Each runs in
//! a module of its own: `serve` (a node), `cluster` (operators), `lock`
//! (locks from the shell), `sim` (deterministic simulations), `check`
//! (histories and audit streams), `chaos` (faults on real processes),
//! `bench` (load), `demo` (the table in one
//! process) and `reasons`; the two small ones, `auth hash-token` and
//! `completions`, run here.
//!
//! Only commands that work are listed. Commands that call a cluster do so
//! through tenure-client, never on their own.

use std::io::Write as _;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;

/// Tenure: a Raft-replicated lock and lease service with fencing tokens.
#[derive(Debug, Parser)]
#[command(name = "tenure", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (logs are off unless RUST_LOG asks for them).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node of a Tenure cluster until SIGTERM or Ctrl-C.
    Serve(Box<crate::serve::ServeArgs>),
    /// Operate a running cluster: status, membership, backup and restore.
    Cluster(crate::cluster::ClusterArgs),
    /// Take, keep, release and look at locks; run a command under a lock.
    Lock(crate::lock::LockArgs),
    /// The audit ledger as JSON lines: `changes export` (a range, gap-free)
    /// and `changes follow` (a stream with a cursor in a state file).
    Changes(crate::changes::ChangesArgs),
    /// Run the lease table in this process through a short story: contention,
    /// a waiting acquire, an expiry, a fenced write refused, a hand-off.
    /// Single process, no network, no disk: `tenure serve` runs the cluster.
    Demo {
        /// Print the audit events as JSON lines instead of the story.
        #[arg(long)]
        json: bool,
        /// The TTL the demo's leases ask for, in milliseconds (the waiter
        /// waits up to three of them, within the table's 300 s wait bound).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        ttl_ms: u64,
    },
    /// Put load on a running cluster and report throughput, latency
    /// percentiles and errors by reason (`scripts/bench` compares with etcd).
    Bench(Box<crate::bench::BenchCommand>),
    /// Check a history or an audit stream against Tenure's invariants; exit
    /// 0 pass, 1 violation, 2 inconclusive.
    Check(crate::check::CheckArgs),
    /// Faults on real processes: a cluster of this binary in network
    /// namespaces under partitions, slow and lossy links, kill -9, SIGSTOP,
    /// fast and stepped clocks and a full disk, its clients' history checked;
    /// exit 0 clean, 1 violation, 2 inconclusive. Needs root.
    #[command(args_override_self = true)]
    Chaos(Box<crate::chaos::ChaosArgs>),
    /// Deterministic simulations of a cluster under faults: `sim list`,
    /// `sim run SCENARIO --seed N`; exit 0 pass, 1 violation, 2 inconclusive.
    Sim(crate::sim::SimArgs),
    /// Authentication helpers: new tokens, hashes.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Certificates for TLS: `certs init` makes a development CA, node
    /// certificates and a client certificate.
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),
    /// Print a shell completion script: `tenure completions bash > …`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// List every reason string Tenure answers with, its gRPC code, HTTP
    /// class and whether a retry of the same request may succeed.
    Reasons {
        /// One JSON object per reason instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `tenure auth`.
#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Make a bearer token with a public id part, and print it with the
    /// `[[principal]]` entry (its id and Argon2id hash) for the auth file.
    NewToken {
        /// The principal's name: the owner of the leases it takes.
        #[arg(long)]
        name: String,
        /// Its roles: writer (the default), reader, admin.
        #[arg(long, value_delimiter = ',', default_value = "writer")]
        roles: Vec<String>,
        /// The tenants it may use (`*`: every tenant).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        tenants: Vec<String>,
        /// One JSON object, {"token": …, "toml": …}.
        #[arg(long)]
        json: bool,
    },
    /// Print an Argon2id hash of a bearer token, for an auth file's
    /// `token_hash` (the token is read from stdin unless given).
    HashToken {
        /// The token; prefer stdin, so it stays out of shell history.
        token: Option<String>,
    },
}

impl Cli {
    /// Whether logs are off unless asked for.
    pub fn quiet(&self) -> bool {
        matches!(self.command, Command::Sim(_))
    }

    /// Runs the chosen command.
    pub fn run(self) -> Result<(), Error> {
        let mut out = std::io::stdout().lock();
        match self.command {
            Command::Serve(args) => crate::serve::run(*args),
            Command::Cluster(args) => crate::cluster::run(args, &mut out),
            Command::Changes(args) => crate::changes::run(args, &mut out),
            Command::Lock(args) => match crate::lock::run(args, &mut out)? {
                // `lock run` exits with its command's status.
                Some(status) => std::process::exit(status.code().unwrap_or(1)),
                None => Ok(()),
            },
            Command::Bench(args) => crate::bench::run(*args, &mut out),
            Command::Check(args) => exit_with(crate::check::run(args, &mut out)?, &mut out),
            Command::Chaos(args) => exit_with(crate::chaos::run(*args, &mut out)?, &mut out),
            Command::Sim(args) => exit_with(crate::sim::run(args, &mut out)?, &mut out),
            Command::Demo { json, ttl_ms } => crate::demo::run(&mut out, json, ttl_ms),
            Command::Reasons { json } => crate::reasons::print(&mut out, json),
            Command::Certs(command) => crate::certs::run(command, &mut out),
            Command::Auth(AuthCommand::NewToken {
                name,
                roles,
                tenants,
                json,
            }) => {
                let (token, toml) = new_token(&name, &roles, &tenants)?;
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({ "token": token, "toml": toml })
                    )?;
                } else {
                    writeln!(
                        out,
                        "{token}\n\n# Add to the auth file, then reload it (SIGHUP); the token is shown only once.\n{toml}"
                    )?;
                }
                Ok(())
            }
            Command::Auth(AuthCommand::HashToken { token }) => {
                let token = match token {
                    Some(t) => t,
                    None => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_owned()
                    }
                };
                if token.is_empty() {
                    return Err(Error::Cluster("an empty token".into()));
                }
                writeln!(out, "{}", tenure_server::auth::hash_token(&token)?)?;
                Ok(())
            }
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "tenure", &mut out);
                Ok(())
            }
        }
    }
}

/// Ends a command that answers an exit status (0 pass, 1 violation, 2
/// inconclusive). Its output is flushed first, but a closed stdout does
/// not decide the status: a violation piped into `head` still exits 1.
fn exit_with(code: u8, out: &mut impl std::io::Write) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let _ = out.flush();
    std::process::exit(i32::from(code))
}

/// A new token for `name`, and the auth file entry that admits it.
pub(crate) fn new_token(
    name: &str,
    roles: &[String],
    tenants: &[String],
) -> Result<(String, String), Error> {
    let bad = |m: String| Error::Cluster(m);
    tenure_core::validate::owner(name).map_err(|e| bad(format!("--name: {e}")))?;
    tenure_server::auth::Roles::parse(Some(roles)).map_err(|e| bad(format!("--roles: {e}")))?;
    for t in tenants.iter().filter(|t| *t != "*") {
        tenure_core::validate::tenant(t).map_err(|e| bad(format!("--tenants: {e}")))?;
    }
    let (token, id) = tenure_server::auth::new_token();
    let hash = tenure_server::auth::hash_token(&token)?;
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let toml = format!(
        "[[principal]]\nname = {name:?}\ntoken_id = {id:?}\ntoken_hash = {hash:?}\nroles = [{}]\ntenants = [{}]\n",
        list(roles),
        list(tenants)
    );
    tenure_server::auth::check_file(&toml).map_err(|e| bad(format!("the entry made: {e}")))?;
    Ok((token, toml))
}

/// Structured logs to stderr, filtered by `RUST_LOG` (default: warnings;
/// for `tenure sim`, none: simulated faults make the nodes complain by
/// design, and the report says what matters).
pub fn init_logging(format: LogFormat, quiet: bool) {
    let default = if quiet { "off" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a log file, a pipe or a
    // journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .fmt_fields(crate::logs::json_fields())
            .event_format(crate::logs::WithNode(
                tracing_subscriber::fmt::format().json(),
            ))
            .init(),
    }
}
