//! Workspace-level tests; the tests themselves are in `simulation.rs`.
//! This library holds what they share: which seeds to run.

use std::hash::{BuildHasher, Hasher};

/// The seed `TENURE_SIM_SEED` pins, if set: then only that seed runs.
pub fn pinned_seed() -> Option<u64> {
    std::env::var("TENURE_SIM_SEED").ok()?.parse().ok()
}

/// How many random seeds run beside each fixed one (`TENURE_SIM_SEEDS`,
/// default 1).
pub fn random_seed_count() -> u64 {
    std::env::var("TENURE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A fresh random seed (from the standard library's hasher keys: no clock).
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() % 1_000_000_000
}

/// The seeds a scenario test runs: the pinned one alone, or `fixed` and
/// the random ones.
pub fn seeds(fixed: u64) -> Vec<u64> {
    if let Some(s) = pinned_seed() {
        return vec![s];
    }
    std::iter::once(fixed)
        .chain((0..random_seed_count()).map(|_| random_seed()))
        .collect()
}
