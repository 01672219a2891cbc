//! INV-3: the lock operations on each key are linearizable against the
//! sequential lock model.
//!
//! The search is Wing and Gong's: repeatedly pick, among the operations not
//! yet placed, one that could take effect next (it was invoked before every
//! other unplaced completed operation returned), apply it to the model, and
//! backtrack when the model refuses. Lowe's memo of (placed set, model state)
//! keeps it from searching the same configuration twice. Keys are
//! independent, so each is searched on its own, within a step budget; a key
//! whose budget runs out is *inconclusive*.
//!
//! The model: a lock has its holders, in grant order (each a lease seen in
//! an answer, or one some unknown acquire may have been granted, with the
//! mode it holds in), and its last fencing token. A grant takes the next
//! token and joins the holders if its mode fits: an exclusive grant needs
//! no holder, a shared one no exclusive holder, a semaphore's of `n` fewer
//! than `n` holders (a key's holders share its kind; the server's FIFO
//! queue is not modelled). A refusal as `LOCK_HELD` needs a holder. A
//! release or a renewal of a holder's lease succeeds, and fails for any
//! other lease; a get sees the first holder and the token; a force-release
//! frees every holder. A holder may also lose the lock by expiry, but only
//! once its client-side deadline has passed: the server never expires a
//! lease before its holder's deadline (the time model's promise), so an
//! expiry before it is a violation. Before each step, any set of the
//! holders that may have expired by its return may be gone (with more than
//! six of them: none, all, or any one alone).

use std::collections::{BTreeMap, HashSet};

use crate::Limits;
use crate::history::{History, Mode, Op, Operation, Outcome};
use crate::report::{Inconclusive, Report};

/// Up to this many holders that may have expired before a step, the search
/// tries every set of them gone; beyond it, only all of them or any one.
const MAX_EXPIRY_SUBSETS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Holder {
    /// A lease seen in an answer; it may expire once its deadline passes.
    Known {
        lease: u32,
        deadline: u64,
        mode: Mode,
    },
    /// Granted to an acquire whose answer never came: it may expire at any time.
    Unseen { mode: Mode },
}

impl Holder {
    fn mode(self) -> Mode {
        match self {
            Holder::Known { mode, .. } | Holder::Unseen { mode } => mode,
        }
    }

    fn is(self, lease: Option<u32>) -> bool {
        matches!(self, Holder::Known { lease: l, .. } if Some(l) == lease)
    }

    /// Whether it may have expired by `by`.
    fn may_expire(self, by: u64) -> bool {
        match self {
            Holder::Known { deadline, .. } => deadline <= by,
            Holder::Unseen { .. } => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Model {
    /// In grant order.
    holders: Vec<Holder>,
    token: u64,
}

/// What the model needs of one operation.
struct Step<'a> {
    op: &'a Operation,
    /// Interned lease id.
    lease: Option<u32>,
    /// The holder a get saw, interned.
    saw: Option<u32>,
}

impl Model {
    /// The models with one or more of the holders that may have expired by
    /// `by` gone, without repeats.
    fn expiries(&self, by: u64) -> Vec<Model> {
        let may: Vec<usize> = (0..self.holders.len())
            .filter(|&i| self.holders[i].may_expire(by))
            .collect();
        if may.is_empty() {
            return Vec::new();
        }
        let gone_sets: Vec<Vec<usize>> = if may.len() <= MAX_EXPIRY_SUBSETS {
            (1..1usize << may.len())
                .map(|bits| {
                    (0..may.len())
                        .filter(|b| bits & (1 << b) != 0)
                        .map(|b| may[b])
                        .collect()
                })
                .collect()
        } else {
            let mut sets = vec![may.clone()];
            sets.extend(may.iter().map(|&i| vec![i]));
            sets
        };
        let mut out: Vec<Model> = Vec::with_capacity(gone_sets.len());
        for gone in gone_sets {
            let m = Model {
                holders: (0..self.holders.len())
                    .filter(|i| !gone.contains(i))
                    .map(|i| self.holders[i])
                    .collect(),
                token: self.token,
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// The states `step` can leave the model in (none: it cannot happen now).
    fn apply(&self, step: &Step<'_>) -> Vec<Model> {
        let mut out = Vec::new();
        self.apply_to(step, &mut out);
        // Or some holders expired first.
        for before in self.expiries(step.op.returned) {
            before.apply_to(step, &mut out);
        }
        out
    }

    /// Whether a grant in `mode` fits the holders.
    fn fits(&self, mode: Mode) -> bool {
        match mode {
            Mode::Exclusive => self.holders.is_empty(),
            Mode::Shared => self.holders.iter().all(|h| h.mode() != Mode::Exclusive),
            Mode::Semaphore(n) => self.holders.len() < n as usize,
        }
    }

    /// The model with `holder` granted the next token.
    fn grant(&self, holder: Holder) -> Model {
        let mut holders = self.holders.clone();
        holders.push(holder);
        Model {
            holders,
            token: self.token + 1,
        }
    }

    /// The model with the holders `gone` picks removed.
    fn without(&self, gone: impl Fn(Holder) -> bool) -> Model {
        Model {
            holders: self.holders.iter().copied().filter(|&h| !gone(h)).collect(),
            token: self.token,
        }
    }

    fn apply_to(&self, step: &Step<'_>, out: &mut Vec<Model>) {
        let op = step.op;
        let mode = op.mode;
        let free = self.holders.is_empty();
        let holds = |lease: Option<u32>| self.holders.iter().any(|h| h.is(lease));
        match (op.op, op.outcome) {
            (Op::Acquire, Outcome::Ok) => {
                if self.fits(mode) && op.token.is_none_or(|t| t == self.token + 1) {
                    out.push(
                        self.grant(step.lease.map_or(Holder::Unseen { mode }, |lease| {
                            Holder::Known {
                                lease,
                                deadline: op.deadline.unwrap_or(u64::MAX),
                                mode,
                            }
                        })),
                    );
                }
            }
            (Op::Acquire, Outcome::Unknown) => {
                if self.fits(mode) {
                    out.push(self.grant(Holder::Unseen { mode }));
                }
            }
            (Op::Acquire, Outcome::Fail) => {
                // Refused because it is held; other refusals change nothing.
                if !free || op.reason.as_deref() != Some("LOCK_HELD") {
                    out.push(self.clone());
                }
            }
            (Op::Release, Outcome::Ok | Outcome::Unknown) => {
                if holds(step.lease) {
                    out.push(self.without(|h| h.is(step.lease)));
                }
            }
            (Op::Renew, Outcome::Ok) => {
                if holds(step.lease) {
                    let mut next = self.clone();
                    for h in &mut next.holders {
                        if let Holder::Known {
                            lease, deadline, ..
                        } = h
                            && Some(*lease) == step.lease
                        {
                            *deadline = (*deadline).max(op.deadline.unwrap_or(*deadline));
                        }
                    }
                    out.push(next);
                }
            }
            (Op::Release | Op::Renew, Outcome::Fail) => {
                if !holds(step.lease) || !is_lease_refusal(op) {
                    out.push(self.clone());
                }
            }
            (Op::Get, Outcome::Ok) => {
                let sees = match (self.holders.first(), step.saw) {
                    (None, None) => true,
                    (Some(Holder::Known { lease, .. }), Some(s)) => *lease == s,
                    (Some(Holder::Unseen { .. }), Some(_)) => true,
                    _ => false,
                };
                if sees && op.token.is_none_or(|t| t == self.token) {
                    out.push(self.clone());
                }
            }
            (Op::ForceRelease, Outcome::Ok | Outcome::Unknown) => out.push(self.without(|_| true)),
            // Reads without an answer, renewals whose answer was lost (the
            // deadline the client keeps is the older one), failed reads and
            // force-releases change nothing.
            _ => out.push(self.clone()),
        }
    }
}

/// A refusal that says the lease is not (or no longer) the holder's.
fn is_lease_refusal(op: &Operation) -> bool {
    matches!(
        op.reason.as_deref(),
        Some("LEASE_EXPIRED" | "LEASE_NOT_ACTIVE" | "LEASE_NOT_FOUND" | "NOT_OWNER")
    )
}

/// A set of placed operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(n: usize) -> Placed {
        Placed(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Placed {
        let mut p = self.clone();
        p.0[i / 64] |= 1 << (i % 64);
        p
    }
}

enum Found {
    Yes,
    No { placed: usize, blocked: Vec<usize> },
    OutOfSteps(u64),
}

/// Searches one key's operations (in invocation order).
fn search(steps_of: &[Step<'_>], budget: u64) -> (Found, u64) {
    let n = steps_of.len();
    // Operations that must be placed: those that completed.
    let must = steps_of
        .iter()
        .filter(|s| s.op.outcome != Outcome::Unknown)
        .count();
    let start = Model {
        holders: Vec::new(),
        token: 0,
    };
    let mut stack = vec![(start, Placed::new(n), 0usize)];
    let mut seen: HashSet<(Placed, Model)> = HashSet::new();
    let mut steps = 0u64;
    let mut deepest = (0usize, Vec::new());
    while let Some((model, placed, done)) = stack.pop() {
        steps += 1;
        if steps > budget {
            return (Found::OutOfSteps(steps), steps);
        }
        if done == must {
            return (Found::Yes, steps);
        }
        // The earliest return among unplaced completed operations bounds
        // which operation may go next.
        let horizon = (0..n)
            .filter(|&i| !placed.has(i) && steps_of[i].op.outcome != Outcome::Unknown)
            .map(|i| steps_of[i].op.returned)
            .min()
            .unwrap_or(u64::MAX);
        let mut candidates = Vec::new();
        for (i, step) in steps_of.iter().enumerate() {
            if placed.has(i) {
                continue;
            }
            if step.op.invoked > horizon {
                break;
            }
            candidates.push(i);
            for next in model.apply(step) {
                let counted = done + usize::from(step.op.outcome != Outcome::Unknown);
                let p = placed.with(i);
                if seen.insert((p.clone(), next.clone())) {
                    stack.push((next, p, counted));
                }
            }
        }
        if done >= deepest.0 {
            deepest = (done, candidates);
        }
    }
    let blocked = deepest.1.iter().map(|&i| steps_of[i].op.line).collect();
    (
        Found::No {
            placed: deepest.0,
            blocked,
        },
        steps,
    )
}

/// A small number for a lease id, the same for the same id.
fn intern<'a>(ids: &mut BTreeMap<&'a str, u32>, id: Option<&'a str>) -> Option<u32> {
    id.map(|id| {
        let next = ids.len() as u32;
        *ids.entry(id).or_insert(next)
    })
}

/// INV-3 for every key of `history`.
pub(crate) fn check(history: &History, limits: Limits, report: &mut Report) {
    let mut by_lock: BTreeMap<&(String, String), Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        if !matches!(op.op, Op::FencedWrite | Op::StoreRead) {
            by_lock.entry(&op.lock).or_default().push(op);
        }
    }
    for (lock, ops) in by_lock {
        let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
        let mut steps_of = Vec::with_capacity(ops.len());
        for op in ops {
            let lease = intern(&mut ids, op.lease_id.as_deref());
            let saw = intern(&mut ids, op.holder.as_deref());
            steps_of.push(Step { op, lease, saw });
        }
        let key = format!("{}/{}", lock.0, lock.1);
        let (found, steps) = search(&steps_of, limits.max_steps_per_key);
        report.search_steps += steps;
        match found {
            Found::Yes => {}
            Found::No { placed, blocked } => report.violate(
                "INV-3",
                key,
                format!(
                    "not linearizable: at most {placed} of its {} completed operations can be ordered; none of the operations that could come next fits the lock model",
                    steps_of.iter().filter(|s| s.op.outcome != Outcome::Unknown).count()
                ),
                blocked,
            ),
            Found::OutOfSteps(steps) => report.inconclusive.push(Inconclusive {
                key,
                operations: steps_of.len(),
                steps,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(holders: usize, unseen: bool) -> Model {
        Model {
            holders: (0..holders as u32)
                .map(|lease| {
                    if unseen {
                        Holder::Unseen { mode: Mode::Shared }
                    } else {
                        Holder::Known {
                            lease,
                            deadline: 100 + u64::from(lease),
                            mode: Mode::Shared,
                        }
                    }
                })
                .collect(),
            token: 9,
        }
    }

    #[test]
    fn tn_mode_005_expiry_tries_every_subset_of_few_holders_and_some_of_many() {
        // Only holders whose deadline passed may go: 2 of 4 by 101.
        assert_eq!(model(4, false).expiries(101).len(), 3);
        assert!(model(4, false).expiries(99).is_empty());
        // Six may all go: every subset.
        assert_eq!(model(6, false).expiries(u64::MAX).len(), 63);
        // Seven: all, or each alone.
        let seven = model(7, false).expiries(u64::MAX);
        assert_eq!(seven.len(), 8);
        assert!(seven.iter().any(|m| m.holders.is_empty()));
        assert!(seven.iter().all(|m| m.token == 9));
        // Unseen holders of one mode are alike: removing any k of them is
        // one model.
        assert_eq!(model(3, true).expiries(0).len(), 3);
    }
}
