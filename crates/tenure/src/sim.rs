//! `tenure sim list` and `tenure sim run SCENARIO --seed N | --seeds A..B`:
//! deterministic simulations of a cluster under faults, each history
//! checked for the invariants.
//!
//! Per seed it prints a verdict line and `history-hash: HEX`; for every
//! failure, the report and a one-line command that reproduces it. It
//! writes each history and report under `--out`. Exit status: 0 when every
//! seed passed, 1 on any violation (or a simulation that failed to run), 2
//! when none was violated but some search was inconclusive.
//!
//! `tenure sim shrink SCENARIO --seed N [--control NAME] [--out FILE]`
//! reduces a failing run to a small plan that fails the same way, and
//! `tenure sim run SCENARIO --plan FILE` replays a plan, with the same
//! output and exit status as the run it came from.

use std::io::Write;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tenure_sim::scenario::{self, Control, Outcome};

use crate::error::Error;

/// `tenure sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Name the scenarios, their faults, and the negative controls.
    List {
        /// One JSON object per scenario.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario for one seed or a range of seeds, or replay a plan.
    Run(RunArgs),
    /// Reduce a failing run (its faults, clients and length) to a small
    /// plan that fails the same way, and write the plan (`--out`, or
    /// stdout). `tenure sim run SCENARIO --plan FILE` replays it.
    Shrink(ShrinkArgs),
}

#[derive(Debug, Args)]
struct ShrinkArgs {
    /// The scenario.
    scenario: String,
    /// The failing seed.
    #[arg(long)]
    seed: u64,
    /// The negative control the run was under.
    #[arg(long)]
    control: Option<Control>,
    /// Where the plan goes (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A JSON summary (sizes before and after) instead of text.
    #[arg(long)]
    json: bool,
}

/// Which histories to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Keep {
    /// Every seed's history and report.
    All,
    /// Only those of seeds that did not pass.
    Failures,
    /// None.
    None,
}

#[derive(Clone, Debug, Args)]
struct RunArgs {
    /// The scenario (`tenure sim list`), or `all` for every scenario that
    /// expects no violation.
    scenario: String,
    /// One seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Replay a plan file (`tenure sim shrink` writes them): its seed, its
    /// clients and length, and its faults exactly.
    #[arg(long, conflicts_with_all = ["seed", "seeds"])]
    plan: Option<PathBuf>,
    /// A range of seeds, `A..B` (inclusive).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<RangeInclusive<u64>>,
    /// Run with a negative control: a deliberate break the simulation must
    /// catch (`tenure sim list` names them).
    #[arg(long)]
    control: Option<Control>,
    /// Where histories and reports go.
    #[arg(long, default_value = "sim-runs")]
    out: PathBuf,
    /// Which histories and reports to write.
    #[arg(long, value_enum, default_value_t = Keep::All)]
    keep: Keep,
    /// Seeds run at once (each simulation is single-threaded).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,
    /// Print the fault schedule of each seed.
    #[arg(long)]
    faults: bool,
    /// A JSON summary line per seed instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<RangeInclusive<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not A..B"))?;
    let a: u64 = a.parse().map_err(|_| format!("{a:?} is not a seed"))?;
    let b: u64 = b
        .trim_start_matches('=')
        .parse()
        .map_err(|_| format!("{b:?} is not a seed"))?;
    if b < a {
        return Err(format!("{s}: the range is empty"));
    }
    Ok(a..=b)
}

/// Runs `tenure sim`; answers the exit status.
pub fn run(args: SimArgs, out: &mut impl Write) -> Result<u8, Error> {
    match args.command {
        SimCommand::List { json } => list(out, json).map(|()| 0),
        SimCommand::Run(r) => run_seeds(r, out),
        SimCommand::Shrink(a) => shrink(a, out),
    }
}

fn find(name: &str) -> Result<scenario::Scenario, Error> {
    scenario::scenario(name).ok_or_else(|| {
        let names: Vec<&str> = scenario::scenarios().iter().map(|s| s.name).collect();
        Error::Cluster(format!(
            "no scenario {name:?}; there are: {}",
            names.join(", ")
        ))
    })
}

fn shrink(args: ShrinkArgs, out: &mut impl Write) -> Result<u8, Error> {
    let s = find(&args.scenario)?;
    let started = stopwatch();
    let mut progress = |line: &str| eprintln!("shrink: {line}");
    let shrunk = tenure_sim::plan::shrink(&s, args.seed, args.control, &mut progress)
        .map_err(|e| Error::Cluster(e.to_string()))?;
    let text = shrunk.plan.text();
    if let Some(path) = &args.out {
        std::fs::write(path, &text)
            .map_err(|e| Error::Cluster(format!("{}: {e}", path.display())))?;
    }
    let (b, a) = (shrunk.before, shrunk.after);
    let replay = match (&args.out, args.control) {
        (Some(p), Some(c)) => format!(
            "tenure sim run {} --plan {} --control {c}",
            s.name,
            p.display()
        ),
        (Some(p), None) => format!("tenure sim run {} --plan {}", s.name, p.display()),
        (None, _) => format!("tenure sim run {} --plan FILE", s.name),
    };
    if args.json {
        let v = serde_json::json!({
            "scenario": s.name, "seed": args.seed, "control": args.control.map(|c| c.name()),
            "failure": shrunk.failure, "before": b, "after": a, "simulations": shrunk.runs,
            "wall_s": started.elapsed().as_secs_f64(), "history_hash": shrunk.outcome.hash,
            "plan": args.out.as_ref().map(|p| p.display().to_string()),
        });
        writeln!(out, "{v}")?;
    } else {
        if args.out.is_none() {
            write!(out, "{text}")?;
        }
        writeln!(
            out,
            "shrunk {} seed {}: {} violated; faults {} -> {}, clients {} -> {}, run {} -> {} ms, operations {} -> {} ({} simulations, {:.1} s)",
            s.name,
            args.seed,
            shrunk.failure,
            b.faults,
            a.faults,
            b.clients,
            a.clients,
            b.run_for_ms,
            a.run_for_ms,
            b.operations,
            a.operations,
            shrunk.runs,
            started.elapsed().as_secs_f64()
        )?;
        writeln!(out, "history-hash: {}", shrunk.outcome.hash)?;
        writeln!(out, "replay: {replay}")?;
    }
    Ok(0)
}

fn list(out: &mut impl Write, json: bool) -> Result<(), Error> {
    for s in scenario::scenarios() {
        let faults: Vec<&str> = s.faults.iter().map(|f| f.name()).collect();
        if json {
            let v = serde_json::json!({
                "name": s.name,
                "about": s.about,
                "nodes": s.nodes,
                "clients": s.workload.clients,
                "keys": s.workload.keys,
                "faults": faults,
                "drift": format!("{:?}", s.drift).to_lowercase(),
                "simulated_s": s.run_for.as_secs(),
                "expect_violation": s.expect_violation,
                "breaks": s.breaks,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{:<14} {}", s.name, s.about)?;
            writeln!(
                out,
                "{:<14} {} nodes, {} clients, {} keys; faults: {}{}",
                "",
                s.nodes,
                s.workload.clients,
                s.workload.keys,
                faults.join(", "),
                if s.expect_violation {
                    "; violations expected"
                } else {
                    ""
                }
            )?;
        }
    }
    if !json {
        writeln!(out)?;
        writeln!(
            out,
            "negative controls (--control NAME; each must be caught):"
        )?;
        for c in Control::ALL {
            writeln!(
                out,
                "  {:<26} breaks {}, shown by {}",
                c.name(),
                c.breaks(),
                c.scenario()
            )?;
        }
    }
    Ok(())
}

/// The wall clock, for the speed this command reports (never a decision).
#[allow(clippy::disallowed_methods)]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

struct Done {
    outcome: Result<Outcome, String>,
    scenario: &'static str,
    seed: u64,
    wall: Duration,
}

fn run_seeds(args: RunArgs, out: &mut impl Write) -> Result<u8, Error> {
    let chosen: Vec<scenario::Scenario> = if args.scenario == "all" {
        scenario::scenarios()
            .into_iter()
            .filter(|s| !s.expect_violation)
            .collect()
    } else {
        let s = scenario::scenario(&args.scenario).ok_or_else(|| {
            let names: Vec<&str> = scenario::scenarios().iter().map(|s| s.name).collect();
            Error::Cluster(format!(
                "no scenario {:?}; there are: {}",
                args.scenario,
                names.join(", ")
            ))
        })?;
        vec![s]
    };
    if let Some(path) = &args.plan {
        return replay(&args, chosen, path, out);
    }
    let seeds: Vec<u64> = match (args.seed, &args.seeds) {
        (Some(s), _) => vec![s],
        (None, Some(r)) => r.clone().collect(),
        (None, None) => {
            return Err(Error::Cluster(
                "give --seed N, --seeds A..B or --plan FILE".into(),
            ));
        }
    };
    if args.keep != Keep::None {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| Error::Cluster(format!("{}: {e}", args.out.display())))?;
    }
    // Seeds run in order of (seed, scenario): with `all`, every scenario
    // gets the same seeds.
    let jobs: Vec<(scenario::Scenario, u64)> = seeds
        .iter()
        .flat_map(|seed| chosen.iter().map(move |s| (s.clone(), *seed)))
        .collect();
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Done)>();
    let started = stopwatch();
    let (mut pass, mut violated, mut inconclusive, mut failed) = (0, 0, 0, 0);
    let mut simulated = Duration::ZERO;
    let mut caught = Vec::new();
    let printed: Result<(), Error> = std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            let tx = tx.clone();
            let (queue, control) = (&queue, args.control);
            scope.spawn(move || {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some((i, (s, seed))) = next else { return };
                    let t = stopwatch();
                    let outcome = scenario::run(&s, seed, control).map_err(|e| e.to_string());
                    let done = Done {
                        outcome,
                        scenario: s.name,
                        seed,
                        wall: t.elapsed(),
                    };
                    if tx.send((i, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // Print in seed order as results arrive.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for (i, d) in rx {
            waiting.insert(i, d);
            while let Some(d) = waiting.remove(&next) {
                next += 1;
                report_seed(&args, &d, out)?;
                out.flush()?;
                match &d.outcome {
                    Ok(o) => {
                        simulated += o.simulated;
                        caught.push(o.caught());
                        match o.verdict() {
                            "pass" => pass += 1,
                            "violation" => violated += 1,
                            _ => inconclusive += 1,
                        }
                    }
                    Err(_) => {
                        failed += 1;
                        caught.push(false);
                    }
                }
            }
        }
        Ok(())
    });
    printed?;
    let wall = started.elapsed();
    let speed = simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    if args.json {
        let v = serde_json::json!({
            "summary": true,
            "runs": total,
            "pass": pass,
            "violation": violated,
            "inconclusive": inconclusive,
            "failed": failed,
            "simulated_s": simulated.as_secs_f64(),
            "wall_s": wall.as_secs_f64(),
            "simulated_per_wall_s": speed,
            "control": args.control.map(|c| c.name()),
            "median_seeds_to_catch": args.control.and_then(|_| scenario::median_seeds_to_catch(&caught)),
            "caught": args.control.map(|_| caught.iter().filter(|x| **x).count()),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{} runs: {pass} pass, {violated} violation, {inconclusive} inconclusive, {failed} failed to run; {:.1} s simulated in {:.1} s ({speed:.1} simulated s per wall s, {} jobs)",
            total,
            simulated.as_secs_f64(),
            wall.as_secs_f64(),
            args.jobs
        )?;
        if let Some(c) = args.control {
            match scenario::median_seeds_to_catch(&caught) {
                Some(m) => writeln!(
                    out,
                    "control {c}: caught ({} violated) in {} of {total} runs; median seeds to catch: {m}",
                    c.breaks(),
                    caught.iter().filter(|x| **x).count()
                )?,
                None => writeln!(
                    out,
                    "control {c}: NOT caught ({} never violated) in {total} runs",
                    c.breaks()
                )?,
            }
        }
    }
    Ok(if failed > 0 || violated > 0 {
        1
    } else if inconclusive > 0 {
        2
    } else {
        0
    })
}

/// Replays a plan file: the same report and exit status as a seed.
fn replay(
    args: &RunArgs,
    chosen: Vec<scenario::Scenario>,
    path: &std::path::Path,
    out: &mut impl Write,
) -> Result<u8, Error> {
    let [s] = &chosen[..] else {
        return Err(Error::Cluster(
            "a plan replays one scenario, not all".into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Cluster(format!("{}: {e}", path.display())))?;
    let plan = tenure_sim::plan::Plan::read(&text)
        .map_err(|e| Error::Cluster(format!("{}: {e}", path.display())))?;
    if plan.scenario != s.name {
        return Err(Error::Cluster(format!(
            "the plan is for scenario {}, not {}",
            plan.scenario, s.name
        )));
    }
    let planned: Option<Control> = match &plan.control {
        Some(c) => Some(c.parse().map_err(Error::Cluster)?),
        None => None,
    };
    if args.control.is_some() && args.control != planned {
        return Err(Error::Cluster(format!(
            "the plan was made under control {}, not {}",
            planned.map_or("none", |c| c.name()),
            args.control.map_or("none", |c| c.name())
        )));
    }
    let control = args.control.or(planned);
    if args.keep != Keep::None {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| Error::Cluster(format!("{}: {e}", args.out.display())))?;
    }
    let t = stopwatch();
    let outcome =
        scenario::run_with(s, plan.seed, control, &plan.overrides()).map_err(|e| e.to_string());
    let done = Done {
        outcome,
        scenario: s.name,
        seed: plan.seed,
        wall: t.elapsed(),
    };
    let args = RunArgs {
        control,
        ..args.clone()
    };
    report_seed(&args, &done, out)?;
    Ok(match &done.outcome {
        Ok(o) => match o.verdict() {
            "pass" => 0,
            "violation" => 1,
            _ => 2,
        },
        Err(_) => 1,
    })
}

fn report_seed(args: &RunArgs, d: &Done, out: &mut impl Write) -> Result<(), Error> {
    let o = match &d.outcome {
        Ok(o) => o,
        Err(e) => {
            if args.json {
                let v = serde_json::json!({
                    "scenario": d.scenario, "seed": d.seed, "verdict": "failed", "error": e,
                    "reproduce": scenario::reproduce(d.scenario, d.seed, args.control),
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{} seed {}: failed to run: {e}", d.scenario, d.seed)?;
                writeln!(
                    out,
                    "reproduce: {}",
                    scenario::reproduce(d.scenario, d.seed, args.control)
                )?;
            }
            return Ok(());
        }
    };
    let failed = o.verdict() != "pass";
    let stem = args.out.join(format!("{}-{}", o.scenario, o.seed));
    if args.keep == Keep::All || (args.keep == Keep::Failures && failed) {
        let mut report = o.report.to_string();
        for l in &o.liveness {
            report.push_str(l);
            report.push('\n');
        }
        report.push_str("faults:\n");
        for f in &o.faults {
            report.push_str(f);
            report.push('\n');
        }
        let write = |ext: &str, text: &str| {
            let path = stem.with_extension(ext);
            std::fs::write(&path, text)
                .map_err(|e| Error::Cluster(format!("{}: {e}", path.display())))
        };
        write("history.ndjson", &o.history)?;
        write("report.txt", &report)?;
    }
    if args.json {
        let v = serde_json::json!({
            "scenario": o.scenario,
            "seed": o.seed,
            "control": o.control.map(|c| c.name()),
            "verdict": o.verdict(),
            "history_hash": o.hash,
            "operations": o.report.operations,
            "violations": o.report.violations.iter().map(|v| format!("{} {}: {}", v.invariant, v.key, v.message)).chain(o.liveness.iter().cloned()).collect::<Vec<_>>(),
            "simulated_s": o.simulated.as_secs_f64(),
            "wall_s": d.wall.as_secs_f64(),
            "reproduce": failed.then(|| scenario::reproduce(o.scenario, o.seed, o.control)),
            "breaks": o.breaks,
            "caught": o.breaks.map(|_| o.caught()),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} seed {}: {} ({} operations, {:.1} s simulated in {:.2} s)",
        o.scenario,
        o.seed,
        o.verdict(),
        o.report.operations,
        o.simulated.as_secs_f64(),
        d.wall.as_secs_f64()
    )?;
    writeln!(out, "history-hash: {}", o.hash)?;
    if args.faults {
        for f in &o.faults {
            writeln!(out, "  {f}")?;
        }
    }
    if failed {
        for v in &o.report.violations {
            writeln!(
                out,
                "  {} {}: {} (lines {:?})",
                v.invariant, v.key, v.message, v.lines
            )?;
        }
        for i in &o.report.inconclusive {
            writeln!(
                out,
                "  inconclusive {}: {} operations, {} steps",
                i.key, i.operations, i.steps
            )?;
        }
        for l in &o.liveness {
            writeln!(out, "  {l}")?;
        }
        writeln!(
            out,
            "reproduce: {}",
            scenario::reproduce(o.scenario, o.seed, o.control)
        )?;
    }
    Ok(())
}
