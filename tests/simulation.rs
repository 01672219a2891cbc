//! Whole clusters in a deterministic simulation (tenure-sim on turmoil),
//! each run's client history checked by tenure-check: every scenario keeps
//! the invariants, the same seed gives the same history, and every
//! deliberately broken variant of the time model is caught.
//!
//! Each scenario test runs a fixed seed and `TENURE_SIM_SEEDS` random ones
//! (default 1). `TENURE_SIM_SEED=N` runs seed N alone; every failure prints
//! the command that reproduces it, byte for byte.

use tenure_sim::scenario::{self, Control, Outcome};
use tenure_tests::seeds;

/// Runs `name` on the test's seeds; fails with the report and the
/// reproduction command of each seed that did not pass.
fn keeps_every_invariant(name: &str, test: &str, fixed: u64) {
    let s = scenario::scenario(name).expect("the scenario exists");
    let mut failures = Vec::new();
    for seed in seeds(fixed) {
        match scenario::run(&s, seed, None) {
            Ok(o) if o.verdict() == "pass" => {}
            Ok(o) => failures.push(describe(&o, test)),
            Err(e) => failures.push(format!(
                "seed {seed}: {e}\n  TENURE_SIM_SEED={seed} cargo test -p tenure-tests --test simulation {test}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn describe(o: &Outcome, test: &str) -> String {
    let mut out = format!(
        "{} seed {}: {}\n{}",
        o.scenario,
        o.seed,
        o.verdict(),
        o.report
    );
    for l in &o.liveness {
        out.push_str(&format!("{l}\n"));
    }
    out.push_str("faults:\n");
    for f in &o.faults {
        out.push_str(&format!("  {f}\n"));
    }
    out.push_str(&format!(
        "  TENURE_SIM_SEED={} cargo test -p tenure-tests --test simulation {test}\n  or: {}",
        o.seed,
        scenario::reproduce(o.scenario, o.seed, o.control)
    ));
    out
}

/// The most seeds a broken variant may survive before its test fails.
const CATCH_WITHIN: u64 = 16;

/// Runs seeds 1, 2, … of `name` (or the pinned seed) until one is caught
/// violating an invariant; fails if none is within [`CATCH_WITHIN`].
fn is_caught(name: &str, control: Option<Control>) -> u64 {
    let s = scenario::scenario(name).expect("the scenario exists");
    let seeds: Vec<u64> = match tenure_tests::pinned_seed() {
        Some(seed) => vec![seed],
        None => (1..=CATCH_WITHIN).collect(),
    };
    let breaks = control
        .map(Control::breaks)
        .or(s.breaks)
        .expect("a control, or a scenario that demonstrates a limit, names what it breaks");
    for seed in &seeds {
        let o = scenario::run(&s, *seed, control).expect("the simulation runs");
        // Only the invariant it breaks counts: a liveness miss, or INV-3
        // alone, is not this control caught.
        if o.caught() {
            assert!(o.broke(breaks));
            return *seed;
        }
    }
    panic!(
        "{name} with {control:?}: {breaks} never violated in seeds {seeds:?}; the simulation does not bite"
    );
}

#[test]
fn tn_sim_001_a_minority_cut_off_with_its_clients_keeps_every_invariant() {
    keeps_every_invariant(
        "partitions",
        "tn_sim_001_a_minority_cut_off_with_its_clients_keeps_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_a_leader_isolated_with_its_clients_cannot_split_the_brain() {
    keeps_every_invariant(
        "split-brain",
        "tn_sim_001_a_leader_isolated_with_its_clients_cannot_split_the_brain",
        1,
    );
}

#[test]
fn tn_sim_001_one_way_partitions_and_lost_answers_keep_every_invariant() {
    keeps_every_invariant(
        "asymmetric",
        "tn_sim_001_one_way_partitions_and_lost_answers_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_lost_and_late_messages_keep_every_invariant() {
    keeps_every_invariant(
        "lossy",
        "tn_sim_001_lost_and_late_messages_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_crashes_that_lose_unflushed_writes_keep_every_invariant() {
    keeps_every_invariant(
        "crash-restart",
        "tn_sim_001_crashes_that_lose_unflushed_writes_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_a_leader_paused_past_the_ttl_cannot_hand_a_lock_out_twice() {
    keeps_every_invariant(
        "leader-pause",
        "tn_sim_001_a_leader_paused_past_the_ttl_cannot_hand_a_lock_out_twice",
        1,
    );
}

#[test]
fn tn_sim_001_a_client_paused_past_its_ttl_has_its_stale_writes_fenced_off() {
    keeps_every_invariant(
        "client-pause",
        "tn_sim_001_a_client_paused_past_its_ttl_has_its_stale_writes_fenced_off",
        1,
    );
}

#[test]
fn tn_sim_001_many_keys_through_partitions_and_crashes_keep_every_invariant() {
    keeps_every_invariant(
        "many-keys",
        "tn_sim_001_many_keys_through_partitions_and_crashes_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_five_nodes_under_every_fault_keep_every_invariant() {
    keeps_every_invariant(
        "five-nodes",
        "tn_sim_001_five_nodes_under_every_fault_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_001_three_nodes_under_every_fault_keep_every_invariant() {
    keeps_every_invariant(
        "mixed",
        "tn_sim_001_three_nodes_under_every_fault_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_sim_005_clock_drift_within_the_allowance_and_wall_clock_steps_do_not_matter() {
    keeps_every_invariant(
        "clock-drift",
        "tn_sim_005_clock_drift_within_the_allowance_and_wall_clock_steps_do_not_matter",
        1,
    );
}

#[test]
fn tn_sim_005_clocks_drifting_beyond_the_allowance_are_caught_breaking_mutual_exclusion() {
    is_caught("drift-beyond", None);
}

#[test]
fn tn_sim_002_the_same_seed_gives_the_same_history_byte_for_byte() {
    let s = scenario::scenario("mixed").expect("the scenario exists");
    let seed = tenure_tests::pinned_seed().unwrap_or(7);
    let a = scenario::run(&s, seed, None).expect("the simulation runs");
    let b = scenario::run(&s, seed, None).expect("the simulation runs");
    assert!(a.report.operations > 50, "a history worth comparing");
    assert_eq!(a.hash, b.hash, "seed {seed} gave two histories");
    assert_eq!(a.history, b.history);
    assert_eq!(a.faults, b.faults);
    let other = scenario::run(&s, seed + 1, None).expect("the simulation runs");
    assert_ne!(a.hash, other.hash, "another seed, another history");
}

fn control_is_caught(control: Control) {
    let seed = is_caught(control.scenario(), Some(control));
    eprintln!("{control} caught by {} seed {seed}", control.scenario());
}

#[test]
fn tn_sim_003_renewing_without_a_read_index_is_caught_breaking_mutual_exclusion() {
    control_is_caught(Control::RenewWithoutReadIndex);
}

#[test]
fn tn_sim_003_a_new_leader_that_does_not_extend_leases_is_caught_breaking_mutual_exclusion() {
    control_is_caught(Control::NoExtensionOnPromotion);
}

#[test]
fn tn_sim_003_deadlines_on_the_wall_clock_are_caught_breaking_mutual_exclusion() {
    control_is_caught(Control::SharedWallClock);
}

#[test]
fn tn_sim_003_granting_before_the_entry_commits_is_caught_breaking_fencing() {
    control_is_caught(Control::GrantBeforeCommit);
}

#[test]
fn tn_sim_003_a_client_deadline_without_the_drift_margin_is_caught_breaking_mutual_exclusion() {
    control_is_caught(Control::NoDriftMargin);
}

#[test]
fn tn_sim_003_a_store_that_skips_the_fencing_check_is_caught_breaking_fencing() {
    control_is_caught(Control::NoFencingCheck);
}

#[test]
fn tn_mode_006_readers_and_writers_on_two_keys_keep_every_invariant() {
    keeps_every_invariant(
        "readers-writers",
        "tn_mode_006_readers_and_writers_on_two_keys_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_mode_006_semaphores_under_faults_keep_every_invariant() {
    keeps_every_invariant(
        "semaphore",
        "tn_mode_006_semaphores_under_faults_keep_every_invariant",
        1,
    );
}

#[test]
fn tn_mode_006_a_semaphore_with_one_slot_too_many_is_caught_breaking_mutual_exclusion() {
    control_is_caught(Control::SemaphoreExtraSlot);
}

/// Seeds that caught a renewal answered for a lease whose expiry applied
/// while the renewal waited for its quorum check (the table was read before
/// the wait): the expired holder kept a valid guard while the next waiter
/// was granted the lock (INV-1, and INV-2 for the late waiter's token).
#[test]
fn tn_sim_001_a_renewal_never_outlives_an_expiry_applied_meanwhile() {
    let s = scenario::scenario("mixed").expect("the scenario exists");
    for seed in [474_190_334, 1016] {
        let o = scenario::run(&s, seed, None).expect("the run completes");
        assert_eq!(
            o.verdict(),
            "pass",
            "{}",
            describe(
                &o,
                "tn_sim_001_a_renewal_never_outlives_an_expiry_applied_meanwhile"
            )
        );
    }
}

/// A run of a control that violates only linearizability (INV-3) is not a
/// catch of a control that breaks mutual exclusion: split-brain seed 7
/// under renew-without-read-index reports INV-3 alone (found with `tenure
/// sim run split-brain --seeds 1..60 --control renew-without-read-index
/// --json`; seeds 10, 28, 53 do too).
#[test]
fn tn_sim_003_a_violation_of_another_invariant_is_not_a_catch() {
    let s = scenario::scenario("split-brain").expect("the scenario exists");
    let o = scenario::run(&s, 7, Some(Control::RenewWithoutReadIndex)).expect("the run completes");
    assert!(o.violated(), "seed 7 violates something");
    assert!(
        !o.broke("INV-1"),
        "seed 7 now breaks INV-1 too; pick another seed for this test"
    );
    assert!(
        !o.caught(),
        "INV-3 alone counted as catching an INV-1 control"
    );
    assert_eq!(o.breaks, Some("INV-1"));
}

/// The plan of a seeded run (its faults, concrete) replays the run byte for
/// byte, through the file format.
#[test]
fn tn_sim_006_the_plan_of_a_seeded_run_replays_it_byte_for_byte() {
    use tenure_sim::plan::Plan;
    use tenure_sim::scenario::Overrides;
    for (name, seed) in [("mixed", 3), ("five-nodes", 2), ("split-brain", 4)] {
        let s = scenario::scenario(name).expect("the scenario exists");
        let o = scenario::run(&s, seed, None).expect("the simulation runs");
        assert!(!o.steps.is_empty(), "{name} seed {seed} applied no fault");
        let plan = Plan::of(&s, &o, &Overrides::default());
        let read = Plan::read(&plan.text()).expect("the plan reads back");
        assert_eq!(read, plan);
        let again =
            scenario::run_with(&s, seed, None, &read.overrides()).expect("the simulation runs");
        assert_eq!(again.hash, o.hash, "{name} seed {seed}: the replay differs");
        assert_eq!(again.faults, o.faults);
    }
    assert!(Plan::read("{}").is_err());
    assert!(Plan::read(&"x".repeat(10)).is_err());
}

/// A run caught by a negative control shrinks (ddmin over the faults, then
/// fewer clients, a shorter run) to a plan of a few faults that still
/// breaks the control's invariant, and the plan replays that failure.
#[test]
fn tn_sim_007_a_caught_control_shrinks_to_a_few_faults_that_replay_the_failure() {
    use tenure_sim::plan::shrink;
    let control = Control::GrantBeforeCommit;
    let s = scenario::scenario(control.scenario()).expect("the scenario exists");
    let seed = (1..=CATCH_WITHIN)
        .find(|seed| {
            scenario::run(&s, *seed, Some(control))
                .expect("the simulation runs")
                .caught()
        })
        .expect("a seed catches the control");
    let shrunk = shrink(&s, seed, Some(control), &mut |_| {}).expect("it shrinks");
    assert_eq!(shrunk.failure, control.breaks());
    let (b, a) = (shrunk.before, shrunk.after);
    assert!(a.faults <= b.faults && a.faults <= 3, "{b:?} -> {a:?}");
    assert!(a.clients <= b.clients && a.run_for_ms <= b.run_for_ms);
    let replayed = scenario::run_with(&s, seed, Some(control), &shrunk.plan.overrides())
        .expect("the simulation runs");
    assert!(
        replayed.caught(),
        "the shrunk plan no longer breaks {}",
        control.breaks()
    );
    assert_eq!(replayed.hash, shrunk.outcome.hash);
    // A passing run has nothing to shrink.
    let passing = scenario::scenario("partitions").expect("the scenario exists");
    assert!(shrink(&passing, 1, None, &mut |_| {}).is_err());
}
