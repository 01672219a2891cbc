//! Plan files, and shrinking a failing run to a small one.
//!
//! A [`Plan`] is a run written down: the scenario, the seed, the control,
//! how many clients ran for how long, and every fault as it was applied
//! (concrete, see [`crate::nemesis::Step`]). `tenure sim run SCENARIO
//! --plan FILE` replays it: the faults come from the file, everything else
//! from the seed, so the plan of a seeded run replays that run byte for
//! byte.
//!
//! [`shrink`] takes a failing seed and looks for a smaller plan that fails
//! the same way (the same invariant; for a control, the one it breaks):
//! delta debugging over the faults (Zeller's ddmin: drop halves, then
//! quarters, …, keeping any subset that still fails), then fewer clients,
//! then a shorter run, then the faults once more. Every candidate is a full
//! simulation, checked by the same checker.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nemesis::Step;
use crate::scenario::{self, Control, Error, Outcome, Overrides, Scenario};

/// The format of a plan file.
pub const PLAN_FORMAT: &str = "tenure-sim-plan/1";

/// A run, written down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: String,
    /// The scenario.
    pub scenario: String,
    /// The seed everything but the faults comes from.
    pub seed: u64,
    /// The negative control, if any.
    pub control: Option<String>,
    /// Clients.
    pub clients: u64,
    /// How long the clients run, ms.
    pub run_for_ms: u64,
    /// The faults, in order.
    pub faults: Vec<Step>,
}

impl Plan {
    /// The plan of a finished run.
    pub fn of(scenario: &Scenario, outcome: &Outcome, overrides: &Overrides) -> Plan {
        Plan {
            format: PLAN_FORMAT.to_owned(),
            scenario: scenario.name.to_owned(),
            seed: outcome.seed,
            control: outcome.control.map(|c| c.name().to_owned()),
            clients: overrides.clients.unwrap_or(scenario.workload.clients),
            run_for_ms: overrides.run_for.unwrap_or(scenario.run_for).as_millis() as u64,
            faults: outcome.steps.clone(),
        }
    }

    /// What the plan changes in a seeded run.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            clients: Some(self.clients),
            run_for: Some(Duration::from_millis(self.run_for_ms)),
            faults: Some(self.faults.clone()),
        }
    }

    /// Reads a plan file; a wrong format or a bad field is an error.
    pub fn read(text: &str) -> Result<Plan, String> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| format!("not a plan: {e}"))?;
        if plan.format != PLAN_FORMAT {
            return Err(format!(
                "format {:?}; this build reads {PLAN_FORMAT}",
                plan.format
            ));
        }
        if plan.clients == 0 || plan.run_for_ms == 0 {
            return Err("a plan needs at least one client and a run time".into());
        }
        Ok(plan)
    }

    /// The plan as a file's text (pretty JSON, one fault per line).
    pub fn text(&self) -> String {
        let mut out = String::from("{\n");
        let field = |name: &str, value: serde_json::Value| format!("  \"{name}\": {value},\n");
        out.push_str(&field("format", self.format.clone().into()));
        out.push_str(&field("scenario", self.scenario.clone().into()));
        out.push_str(&field("seed", self.seed.into()));
        out.push_str(&field(
            "control",
            self.control
                .clone()
                .map_or(serde_json::Value::Null, Into::into),
        ));
        out.push_str(&field("clients", self.clients.into()));
        out.push_str(&field("run_for_ms", self.run_for_ms.into()));
        out.push_str("  \"faults\": [");
        for (i, f) in self.faults.iter().enumerate() {
            let line = serde_json::to_string(f).unwrap_or_default();
            out.push_str(if i == 0 { "\n    " } else { ",\n    " });
            out.push_str(&line);
        }
        out.push_str(if self.faults.is_empty() {
            "]\n}\n"
        } else {
            "\n  ]\n}\n"
        });
        out
    }

    /// How big the plan is.
    pub fn size(&self, operations: u64) -> Size {
        Size {
            faults: self.faults.len(),
            clients: self.clients,
            run_for_ms: self.run_for_ms,
            operations,
        }
    }
}

/// How big a failing run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size {
    /// Faults applied.
    pub faults: usize,
    /// Clients.
    pub clients: u64,
    /// Client run time, ms.
    pub run_for_ms: u64,
    /// Operations in the history.
    pub operations: u64,
}

/// A failing run made small.
#[derive(Debug)]
pub struct Shrunk {
    /// The failure kept: the invariant violated.
    pub failure: String,
    /// The original run's size.
    pub before: Size,
    /// The shrunk run's size.
    pub after: Size,
    /// The shrunk plan.
    pub plan: Plan,
    /// The shrunk run, replayed from the plan.
    pub outcome: Outcome,
    /// Simulations run while shrinking.
    pub runs: u64,
}

/// Why a run could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The run does not fail: there is nothing to shrink.
    #[error("{0} passes: there is nothing to shrink")]
    Passes(String),
    /// A simulation failed to run.
    #[error(transparent)]
    Sim(#[from] Error),
}

struct Shrinker<'a> {
    scenario: &'a Scenario,
    seed: u64,
    control: Option<Control>,
    failure: String,
    runs: u64,
    progress: &'a mut dyn FnMut(&str),
}

impl Shrinker<'_> {
    /// Runs `plan`: its outcome when it fails the same way.
    fn fails(&mut self, plan: &Plan) -> Result<Option<Outcome>, Error> {
        self.runs += 1;
        let o = scenario::run_with(self.scenario, self.seed, self.control, &plan.overrides())?;
        Ok((o.failure().as_deref() == Some(self.failure.as_str())).then_some(o))
    }

    /// ddmin over the faults: the smallest subset found that still fails.
    fn faults(&mut self, plan: &mut Plan) -> Result<(), Error> {
        let mut n = 2;
        while plan.faults.len() >= 2 {
            let len = plan.faults.len();
            let chunk = len.div_ceil(n);
            let mut reduced = false;
            // Each chunk alone, then each complement.
            let chunks: Vec<(usize, usize)> = (0..len)
                .step_by(chunk)
                .map(|s| (s, (s + chunk).min(len)))
                .collect();
            for &(s, e) in &chunks {
                let mut only = plan.clone();
                only.faults = plan.faults[s..e].to_vec();
                if self.fails(&only)?.is_some() {
                    *plan = only;
                    n = 2;
                    reduced = true;
                    break;
                }
            }
            if !reduced && chunks.len() > 2 {
                for &(s, e) in &chunks {
                    let mut rest = plan.clone();
                    rest.faults.drain(s..e);
                    if self.fails(&rest)?.is_some() {
                        *plan = rest;
                        n = (n - 1).max(2);
                        reduced = true;
                        break;
                    }
                }
            }
            (self.progress)(&format!(
                "faults: {} left ({} simulations)",
                plan.faults.len(),
                self.runs
            ));
            if !reduced {
                if n >= len {
                    break;
                }
                n = (n * 2).min(len);
            }
        }
        // A single fault: maybe none is needed at all.
        if plan.faults.len() == 1 {
            let mut none = plan.clone();
            none.faults.clear();
            if self.fails(&none)?.is_some() {
                *plan = none;
            }
        }
        Ok(())
    }

    /// Fewer clients: the fewest that still fails.
    fn clients(&mut self, plan: &mut Plan) -> Result<(), Error> {
        for c in 1..plan.clients {
            let mut fewer = plan.clone();
            fewer.clients = c;
            // Faults name clients; those gone are left out.
            for f in &mut fewer.faults {
                keep_clients(&mut f.action, c);
            }
            if self.fails(&fewer)?.is_some() {
                *plan = fewer;
                break;
            }
        }
        (self.progress)(&format!(
            "clients: {} ({} simulations)",
            plan.clients, self.runs
        ));
        Ok(())
    }

    /// A shorter run: halve it while it still fails (faults after the end
    /// are dropped).
    fn shorter(&mut self, plan: &mut Plan) -> Result<(), Error> {
        loop {
            let run_for_ms = plan.run_for_ms / 2;
            if run_for_ms < 2_000 {
                break;
            }
            let mut short = plan.clone();
            short.run_for_ms = run_for_ms;
            // The clients start at 2 s; faults end half a second before they stop.
            let end = 2_000 + run_for_ms - 500;
            short.faults.retain(|f| f.until_ms <= end);
            if self.fails(&short)?.is_none() {
                break;
            }
            *plan = short;
        }
        (self.progress)(&format!(
            "run: {} ms ({} simulations)",
            plan.run_for_ms, self.runs
        ));
        Ok(())
    }
}

/// Leaves out the clients numbered above `clients` (hosts `c1`…).
fn keep_clients(action: &mut crate::nemesis::Action, clients: u64) {
    use crate::nemesis::Action;
    let kept = |c: &String| {
        c.strip_prefix('c')
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n <= clients)
    };
    match action {
        Action::Partition { clients: cs, .. } | Action::SplitBrain { clients: cs } => {
            cs.retain(kept);
        }
        Action::Asymmetric { client, .. } if client.as_ref().is_some_and(|c| !kept(c)) => {
            *client = None;
        }
        _ => {}
    }
}

/// Shrinks the failing run of `scenario` with `seed` (under `control`),
/// telling `progress` what it is doing.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    control: Option<Control>,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk, ShrinkError> {
    let original = scenario::run(scenario, seed, control)?;
    let Some(failure) = original.failure() else {
        return Err(ShrinkError::Passes(scenario::reproduce(
            scenario.name,
            seed,
            control,
        )));
    };
    let mut plan = Plan::of(scenario, &original, &Overrides::default());
    let before = plan.size(original.report.operations);
    progress(&format!(
        "{} seed {seed}: {failure} violated with {} faults, {} clients, {} ms",
        scenario.name, before.faults, before.clients, before.run_for_ms
    ));
    let mut s = Shrinker {
        scenario,
        seed,
        control,
        failure: failure.clone(),
        runs: 0,
        progress,
    };
    s.faults(&mut plan)?;
    s.clients(&mut plan)?;
    s.shorter(&mut plan)?;
    s.faults(&mut plan)?;
    // The plan, replayed once more: what it reports is what the file does.
    let outcome = s.fails(&plan)?.ok_or_else(|| {
        Error::Sim("the shrunk plan no longer fails when replayed (nondeterminism?)".into())
    })?;
    let after = plan.size(outcome.report.operations);
    Ok(Shrunk {
        failure,
        before,
        after,
        plan,
        outcome,
        runs: s.runs,
    })
}
