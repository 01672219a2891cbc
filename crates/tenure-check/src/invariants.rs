//! INV-1 (mutual exclusion of validity intervals) and INV-2 (fencing).

use std::collections::BTreeMap;

use crate::history::{History, Op, Operation, Outcome};
use crate::report::Report;

fn name(lock: &(String, String)) -> String {
    format!("{}/{}", lock.0, lock.1)
}

/// A grant as its client saw it: valid from the grant's arrival until the
/// release was sent or the client-side deadline passed, whichever is first.
struct Interval<'a> {
    grant: &'a Operation,
    start: u64,
    end: u64,
}

/// The validity intervals of every grant a client received, by lock.
fn intervals(history: &History) -> BTreeMap<&(String, String), Vec<Interval<'_>>> {
    let mut by_lock: BTreeMap<&(String, String), Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        by_lock.entry(&op.lock).or_default().push(op);
    }
    let mut out = BTreeMap::new();
    for (lock, ops) in by_lock {
        let mut found = Vec::new();
        for grant in ops
            .iter()
            .filter(|o| o.op == Op::Acquire && o.outcome == Outcome::Ok)
        {
            let Some(lease) = &grant.lease_id else {
                continue;
            };
            let start = grant.returned;
            let mut end = grant.deadline.unwrap_or(u64::MAX);
            let same = |o: &&&Operation| o.lease_id.as_ref() == Some(lease) && o.invoked >= start;
            // Renewals answered before the deadline carry it on.
            for renew in ops
                .iter()
                .filter(|o| o.op == Op::Renew && o.outcome == Outcome::Ok)
                .filter(same)
            {
                if renew.returned <= end {
                    end = end.max(renew.deadline.unwrap_or(end));
                }
            }
            // The holder stops when it sends its release.
            if let Some(release) = ops.iter().filter(|o| o.op == Op::Release).find(same) {
                end = end.min(release.invoked);
            }
            // A force-release is the sanctioned end of a holder's interval.
            if let Some(force) = ops.iter().find(|o| {
                o.op == Op::ForceRelease && o.outcome != Outcome::Fail && o.invoked >= start
            }) {
                end = end.min(force.invoked);
            }
            if end > start {
                found.push(Interval { grant, start, end });
            }
        }
        found.sort_by_key(|i| i.start);
        out.insert(lock, found);
    }
    out
}

/// INV-1: for each key, the validity intervals of different grants never
/// overlap in true time.
pub(crate) fn mutual_exclusion(history: &History, report: &mut Report) {
    let all = intervals(history);
    report.keys = all.len() as u64;
    for (lock, found) in all {
        let mut latest: Option<&Interval<'_>> = None;
        for i in &found {
            if let Some(prev) = latest
                && i.start < prev.end
                && i.grant.lease_id != prev.grant.lease_id
            {
                report.violate(
                        "INV-1",
                        name(lock),
                        format!(
                            "lease {} (process {}) held it from {} ns while lease {} (process {}) still held it until {} ns",
                            i.grant.lease_id.as_deref().unwrap_or("?"),
                            i.grant.process,
                            i.start,
                            prev.grant.lease_id.as_deref().unwrap_or("?"),
                            prev.grant.process,
                            prev.end
                        ),
                        vec![prev.grant.done_line, i.grant.done_line],
                    );
            }
            if latest.is_none_or(|p| i.end > p.end) {
                latest = Some(i);
            }
        }
    }
}

/// INV-2: tokens of successive grants strictly increase, no two leases
/// share a token, and the downstream store takes no write older than one
/// it took and loses none it acknowledged.
pub(crate) fn fencing(history: &History, report: &mut Report) {
    for (lock, found) in intervals(history) {
        for pair in found.windows(2) {
            let (a, b) = (pair[0].grant, pair[1].grant);
            if let (Some(ta), Some(tb)) = (a.token, b.token)
                && tb <= ta
            {
                report.violate(
                    "INV-2",
                    name(lock),
                    format!("grant with token {tb} came after a grant with token {ta}"),
                    vec![a.done_line, b.done_line],
                );
            }
        }
    }

    let mut tokens: BTreeMap<(&(String, String), u64), &Operation> = BTreeMap::new();
    for op in history
        .ops
        .iter()
        .filter(|o| o.op == Op::Acquire && o.outcome == Outcome::Ok)
    {
        if let Some(t) = op.token
            && let Some(other) = tokens.insert((&op.lock, t), op)
            && other.lease_id != op.lease_id
        {
            report.violate(
                "INV-2",
                name(&op.lock),
                format!("two leases got fencing token {t}"),
                vec![other.done_line, op.done_line],
            );
        }
    }

    let mut by_lock: BTreeMap<&(String, String), Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        if matches!(op.op, Op::FencedWrite | Op::StoreRead) {
            by_lock.entry(&op.lock).or_default().push(op);
        }
    }
    for (lock, ops) in by_lock {
        let writes: Vec<&&Operation> = ops
            .iter()
            .filter(|o| o.op == Op::FencedWrite && o.outcome == Outcome::Ok)
            .collect();
        // A write accepted although a newer token had been accepted before it began.
        for w in &writes {
            let (Some(t), newer) = (
                w.token,
                writes
                    .iter()
                    .filter(|v| v.returned < w.invoked)
                    .filter_map(|v| v.token.map(|t| (t, v.done_line)))
                    .max(),
            ) else {
                continue;
            };
            if let Some((n, line)) = newer.filter(|&(n, _)| n > t) {
                report.violate(
                    "INV-2",
                    name(lock),
                    format!("the store accepted a write with token {t} after one with token {n}"),
                    vec![line, w.done_line],
                );
            }
        }
        for read in ops
            .iter()
            .filter(|o| o.op == Op::StoreRead && o.outcome == Outcome::Ok)
        {
            let applied = read.applied.clone().unwrap_or_default();
            if applied.windows(2).any(|p| p[1] < p[0]) {
                report.violate(
                    "INV-2",
                    name(lock),
                    format!("the store applied writes out of token order: {applied:?}"),
                    vec![read.done_line],
                );
            }
            for w in writes.iter().filter(|w| w.returned < read.invoked) {
                if let Some(t) = w.token.filter(|t| !applied.contains(t)) {
                    report.violate(
                        "INV-2",
                        name(lock),
                        format!("an acknowledged write with token {t} is missing from the store"),
                        vec![w.done_line, read.done_line],
                    );
                }
            }
        }
    }
}
