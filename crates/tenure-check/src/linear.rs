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
//! The model: a lock has a holder (a lease seen in an answer, a lease some
//! unknown acquire may have been granted, or none) and its last fencing
//! token. A grant needs the lock free and takes the next token; a release or
//! a renewal of the holder's lease succeeds, and fails for any other lease;
//! a get sees the holder and the token. A holder may also lose the lock by
//! expiry, but only once its client-side deadline has passed: the server
//! never expires a lease before its holder's deadline (the time model's
//! promise), so an expiry before it is a violation.

use std::collections::{BTreeMap, HashSet};

use crate::Limits;
use crate::history::{History, Op, Operation, Outcome};
use crate::report::{Inconclusive, Report};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    Free,
    /// A lease seen in an answer; it may expire once its deadline passes.
    Known {
        lease: u32,
        deadline: u64,
    },
    /// Granted to an acquire whose answer never came: it may expire at any time.
    Unseen,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Model {
    holder: Holder,
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
    /// The holder's lease, unless it may have expired by `by`.
    fn may_expire(&self, by: u64) -> bool {
        match self.holder {
            Holder::Free => false,
            Holder::Known { deadline, .. } => deadline <= by,
            Holder::Unseen => true,
        }
    }

    /// The states `step` can leave the model in (none: it cannot happen now).
    fn apply(&self, step: &Step<'_>) -> Vec<Model> {
        let mut out = Vec::new();
        self.apply_to(step, &mut out);
        // Or the holder expired first.
        if self.may_expire(step.op.returned) {
            let freed = Model {
                holder: Holder::Free,
                token: self.token,
            };
            freed.apply_to(step, &mut out);
        }
        out
    }

    fn apply_to(&self, step: &Step<'_>, out: &mut Vec<Model>) {
        let op = step.op;
        let free = self.holder == Holder::Free;
        let holds = |lease: Option<u32>| matches!(self.holder, Holder::Known { lease: l, .. } if Some(l) == lease);
        match (op.op, op.outcome) {
            (Op::Acquire, Outcome::Ok) => {
                if free && op.token.is_none_or(|t| t == self.token + 1) {
                    out.push(Model {
                        holder: step.lease.map_or(Holder::Unseen, |lease| Holder::Known {
                            lease,
                            deadline: op.deadline.unwrap_or(u64::MAX),
                        }),
                        token: self.token + 1,
                    });
                }
            }
            (Op::Acquire, Outcome::Unknown) => {
                if free {
                    out.push(Model {
                        holder: Holder::Unseen,
                        token: self.token + 1,
                    });
                }
            }
            (Op::Acquire, Outcome::Fail) => {
                // Refused because it is held; other refusals change nothing.
                if !free || op.reason.as_deref() != Some("LOCK_HELD") {
                    out.push(self.clone());
                }
            }
            (Op::Release, Outcome::Ok) => {
                if holds(step.lease) {
                    out.push(Model {
                        holder: Holder::Free,
                        token: self.token,
                    });
                }
            }
            (Op::Release, Outcome::Unknown) => {
                if holds(step.lease) {
                    out.push(Model {
                        holder: Holder::Free,
                        token: self.token,
                    });
                }
            }
            (Op::Renew, Outcome::Ok) => {
                if let Holder::Known { lease, deadline } = self.holder
                    && Some(lease) == step.lease
                {
                    out.push(Model {
                        holder: Holder::Known {
                            lease,
                            deadline: deadline.max(op.deadline.unwrap_or(deadline)),
                        },
                        token: self.token,
                    });
                }
            }
            (Op::Release | Op::Renew, Outcome::Fail) => {
                if !holds(step.lease) || !is_lease_refusal(op) {
                    out.push(self.clone());
                }
            }
            (Op::Get, Outcome::Ok) => {
                let sees = match (&self.holder, step.saw) {
                    (Holder::Free, None) => true,
                    (Holder::Known { lease, .. }, Some(s)) => *lease == s,
                    (Holder::Unseen, Some(_)) => true,
                    _ => false,
                };
                if sees && op.token.is_none_or(|t| t == self.token) {
                    out.push(self.clone());
                }
            }
            (Op::ForceRelease, Outcome::Ok | Outcome::Unknown) => out.push(Model {
                holder: Holder::Free,
                token: self.token,
            }),
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
        holder: Holder::Free,
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
