//! `tenure bench`: the closed-loop load generator against a running Tenure
//! cluster (see the `tenure-bench` crate; `scripts/bench` runs it beside
//! etcd and writes the comparison).

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use tenure_bench::BenchArgs;
use tenure_bench::http::HttpTarget;
use tenure_bench::tenure::TenureTarget;

use crate::cluster::Endpoints;
use crate::error::Error;

/// `tenure bench`.
#[derive(Debug, Args)]
pub struct BenchCommand {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The tenant the load runs in.
    #[arg(long, env = "TENURE_TENANT", default_value = "bench")]
    tenant: String,
    /// Your bearer token, for a cluster with an auth file.
    #[arg(long, env = "TENURE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Drive the HTTP/JSON API instead of gRPC: `--endpoints` are then the
    /// nodes' HTTP ports (`--http-listen`), client i using endpoint i mod
    /// their number; plaintext only.
    #[arg(long)]
    http: bool,
    #[command(flatten)]
    bench: BenchArgs,
}

/// Runs the benchmark, prints the table (or JSON) and writes the files.
pub fn run(args: BenchCommand, out: &mut impl Write) -> Result<(), Error> {
    let endpoints = args.endpoints.list();
    let tls = args.endpoints.tls()?;
    if endpoints.is_empty() {
        return Err(Error::Cluster("no endpoints given".into()));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let report = if args.http {
        if tls.is_some() {
            return Err(Error::Cluster(
                "--http drives plaintext HTTP ports only; leave out --tls-ca".into(),
            ));
        }
        let target = Arc::new(HttpTarget::new(
            endpoints,
            args.tenant,
            args.token,
            rand::random(),
        ));
        runtime.block_on(tenure_bench::run(target, &args.bench))
    } else {
        let target = Arc::new(
            TenureTarget::new(endpoints, args.tenant, args.token, rand::random()).with_tls(tls),
        );
        runtime.block_on(tenure_bench::run(target, &args.bench))
    }
    .map_err(|e| Error::Cluster(e.to_string()))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    for path in
        tenure_bench::write(&report, &args.bench).map_err(|e| Error::Cluster(e.to_string()))?
    {
        if !args.json {
            writeln!(out, "  wrote       {}", path.display())?;
        }
    }
    Ok(())
}
