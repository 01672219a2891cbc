//! INV-1 (mutual exclusion of validity intervals, by lock mode) and INV-2
//! (fencing).

use std::collections::BTreeMap;

use crate::history::{History, Mode, Op, Operation, Outcome};
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

/// INV-1: for each key, at every instant of true time the validity
/// intervals open fit the lock's mode: one exclusive holder and no other,
/// or shared holders only, or at most `limit` holders of a semaphore.
///
/// A sweep over each key's intervals, half-open `[start, end)` (at equal
/// times ends come before starts). An interval's start is reported, once,
/// when it is exclusive and another lease's interval is open, when another
/// lease's exclusive interval is open, or when it is a semaphore's of `n`
/// and `n` or more other leases' semaphore intervals are open. Intervals of
/// one lease (an acquire answered twice) are one holder.
pub(crate) fn mutual_exclusion(history: &History, report: &mut Report) {
    let all = intervals(history);
    report.keys = all.len() as u64;
    for (lock, found) in all {
        // (time, 0 for an end or 1 for a start, interval): ends first at
        // equal times, starts in the order of `found`.
        let mut edges: Vec<(u64, u8, usize)> = found
            .iter()
            .enumerate()
            .flat_map(|(at, i)| [(i.start, 1, at), (i.end, 0, at)])
            .collect();
        edges.sort_unstable();
        // Open intervals, in start order.
        let mut open: Vec<usize> = Vec::new();
        for (_, edge, at) in edges {
            if edge == 0 {
                open.retain(|&o| o != at);
                continue;
            }
            let i = &found[at];
            let others: Vec<&Interval<'_>> = open
                .iter()
                .map(|&o| &found[o])
                .filter(|o| o.grant.lease_id != i.grant.lease_id)
                .collect();
            // The one open the longest among `others` that `pick`s (the first
            // to start among equals).
            let widest = |pick: fn(&Interval<'_>) -> bool| {
                others
                    .iter()
                    .copied()
                    .filter(|o| pick(o))
                    .reduce(|a, b| if b.end > a.end { b } else { a })
            };
            let clash = if i.grant.mode == Mode::Exclusive {
                widest(|_| true)
            } else {
                widest(|o| o.grant.mode == Mode::Exclusive)
            };
            if let Some(prev) = clash {
                report.violate(
                    "INV-1",
                    name(lock),
                    overlap(prev, i),
                    vec![prev.grant.done_line, i.grant.done_line],
                );
            } else if let Mode::Semaphore(n) = i.grant.mode {
                let mut holders: Vec<&Interval<'_>> = Vec::new();
                for o in others
                    .iter()
                    .filter(|o| matches!(o.grant.mode, Mode::Semaphore(_)))
                {
                    if holders.iter().all(|h| h.grant.lease_id != o.grant.lease_id) {
                        holders.push(o);
                    }
                }
                if holders.len() >= n as usize {
                    let leases: Vec<String> = holders
                        .iter()
                        .map(|h| format!("{} (process {})", lease(h), h.grant.process))
                        .collect();
                    let mut lines: Vec<usize> = holders.iter().map(|h| h.grant.done_line).collect();
                    lines.push(i.grant.done_line);
                    report.violate(
                        "INV-1",
                        name(lock),
                        format!(
                            "{} holders of a semaphore of {n}: lease {} (process {}) held it from {} ns while leases {} still held it",
                            holders.len() + 1,
                            lease(i),
                            i.grant.process,
                            i.start,
                            leases.join(", ")
                        ),
                        lines,
                    );
                }
            }
            open.push(at);
        }
    }
}

fn lease<'a>(i: &Interval<'a>) -> &'a str {
    i.grant.lease_id.as_deref().unwrap_or("?")
}

/// What INV-1 says of `i` starting while `prev` is open.
fn overlap(prev: &Interval<'_>, i: &Interval<'_>) -> String {
    if prev.grant.mode == Mode::Exclusive && i.grant.mode == Mode::Exclusive {
        format!(
            "lease {} (process {}) held it from {} ns while lease {} (process {}) still held it until {} ns",
            lease(i),
            i.grant.process,
            i.start,
            lease(prev),
            prev.grant.process,
            prev.end
        )
    } else {
        format!(
            "lease {} (process {}, {}) held it from {} ns while lease {} (process {}, {}) still held it until {} ns",
            lease(i),
            i.grant.process,
            i.grant.mode,
            i.start,
            lease(prev),
            prev.grant.process,
            prev.grant.mode,
            prev.end
        )
    }
}

/// INV-2: tokens of successive grants strictly increase, no two leases
/// share a token, and the downstream store takes no write older than one
/// it took and loses none it acknowledged.
///
/// "Successive": on a key whose grants are all exclusive, each interval and
/// the next to start. Shared and semaphore holders may see their grants in
/// any order, so on another key it is every pair of which at least one is
/// exclusive and the first ended at or before the second started.
pub(crate) fn fencing(history: &History, report: &mut Report) {
    for (lock, found) in intervals(history) {
        let mut stale = |a: &Operation, b: &Operation| {
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
        };
        if found.iter().all(|i| i.grant.mode == Mode::Exclusive) {
            for pair in found.windows(2) {
                stale(pair[0].grant, pair[1].grant);
            }
            continue;
        }
        // `found` is in start order, and an interval ends after it starts:
        // only a later one can start after another ended.
        for (at, a) in found.iter().enumerate() {
            for b in &found[at + 1..] {
                let exclusive = a.grant.mode == Mode::Exclusive || b.grant.mode == Mode::Exclusive;
                if exclusive && a.end <= b.start {
                    stale(a.grant, b.grant);
                }
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
