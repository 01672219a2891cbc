//! The server's audit stream: no gaps, a lock's ACTIVE leases fit its
//! mode, tokens +1 per grant.
//!
//! Reads the three shapes Tenure prints: `tenure lock watch --json`
//! (`sequence`, `kind` as `LEASE_ACQUIRE`, `tenant_id`, `lock_key`,
//! `fencing_token`, `gap_before`), `tenure demo --json` (`seq`, `kind`
//! as `LeaseAcquire`, `tenant`, `key`, `token`), and `tenure changes
//! export` (a `tenure-changes/1` header with `from_seq` and `to_seq`, then
//! `seq`, `kind`, `tenant`, `key`, `lease`, `token`): the export must hold
//! every sequence of its range.
//!
//! An event may name the mode of the lease concerned: `mode` (`EXCLUSIVE`,
//! `SHARED` or `SEMAPHORE`; absent: `EXCLUSIVE`) and `limit` (a
//! semaphore's, 1 or more; absent: 0). A lock's ACTIVE leases are one
//! exclusive lease alone, or shared leases only, or at most `limit` leases
//! of a semaphore; a grant that breaks that is `AUDIT-ONE-ACTIVE`. A lease
//! stops being ACTIVE at its `LEASE_RELEASE`, `LEASE_EXPIRE` or
//! `FORCE_RELEASE` (a force-release of an exclusive lease, or of no lease,
//! frees the lock whichever lease it names). A stream of exclusive leases
//! only is checked exactly as before modes.
//!
//! A stream that starts after sequence 1 starts in the middle of the
//! history: what a lock's holder and last token were before it is not
//! known, so the first transition seen of each lock is taken as it comes.
//! An exclusive lease's transition tells the whole state; a shared or
//! semaphore lease's does not (other leases from before may hold too), so
//! until a lock's first exclusive transition its leases are counted from
//! those seen, and a lease from before may end or renew unseen.
//! A `RESTORE` event may follow a jump in the sequence (a restore moves it
//! on by its token gap); after it, every lock's state is again unknown, and
//! every grant's token must be above the event's token (the new floor).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;
use crate::history::Mode;
use crate::report::Report;

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(alias = "sequence")]
    seq: u64,
    kind: String,
    #[serde(alias = "tenant_id")]
    tenant: String,
    #[serde(alias = "lock_key")]
    key: String,
    #[serde(default, alias = "lease")]
    lease_id: serde_json::Value,
    #[serde(alias = "fencing_token", default)]
    token: u64,
    #[serde(default)]
    gap_before: bool,
    /// The lease's mode (absent: EXCLUSIVE).
    #[serde(default)]
    mode: Option<String>,
    /// A semaphore's limit (absent: 0).
    #[serde(default)]
    limit: u32,
}

/// The mode an event's `mode` and `limit` name, if they agree.
fn mode_of(e: &Event) -> Option<Mode> {
    let name = e.mode.as_deref().map(|m| m.trim().to_ascii_uppercase());
    match (name.as_deref(), e.limit) {
        (None | Some("EXCLUSIVE"), 0) => Some(Mode::Exclusive),
        (Some("SHARED"), 0) => Some(Mode::Shared),
        (Some("SEMAPHORE"), n) if n > 0 => Some(Mode::Semaphore(n)),
        _ => None,
    }
}

/// A lease the stream says is ACTIVE.
struct Active {
    lease: String,
    /// The line that made it ACTIVE.
    line: usize,
    mode: Mode,
}

fn upper(mode: Mode) -> String {
    match mode {
        Mode::Semaphore(n) => format!("SEMAPHORE of {n}"),
        m => m.name().to_ascii_uppercase(),
    }
}

/// What the stream says a lock is.
#[derive(Default)]
struct Lock {
    /// In grant order.
    active: Vec<Active>,
    last_token: Option<u64>,
    /// An exclusive transition seen since the stream (or the last restore)
    /// began: its state is known. Until then transitions of leases not
    /// seen are taken as they come.
    known: bool,
}

/// The header of a `tenure changes export`.
#[derive(Debug, Deserialize)]
struct Header {
    #[serde(rename = "type")]
    kind: String,
    format: String,
    from_seq: u64,
    to_seq: u64,
}

/// The line is a header, when it is one.
fn header(line: &str) -> Option<Header> {
    serde_json::from_str::<Header>(line)
        .ok()
        .filter(|h| h.kind == "header")
}

fn lease_name(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks an audit stream (NDJSON text).
pub fn check_audit(text: &str) -> Result<crate::Report, Error> {
    let mut report = Report::new("audit");
    let mut locks: BTreeMap<(String, String), Lock> = BTreeMap::new();
    let mut last_seq: Option<(u64, usize)> = None;
    // The export's header, if the first line is one.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let range = header(first);
    let body = match &range {
        Some(h) if h.format != "tenure-changes/1" => {
            return Err(Error::Malformed {
                line: 1,
                message: format!("format {:?}; this build reads tenure-changes/1", h.format),
            });
        }
        // Keep the line numbers: blank out the header.
        Some(_) => text.replacen(first, "", 1),
        None => text.to_owned(),
    };
    // Before the first event, or after a restore, a lock's past is unknown.
    let mut floor = 0u64;
    let mut partial = true;
    for (line_no, e) in crate::ndjson::<Event>(&body)? {
        report.operations += 1;
        if last_seq.is_none() {
            partial = e.seq > 1;
            if let Some(h) = &range
                && e.seq != h.from_seq
            {
                report.violate(
                    "AUDIT-SEQ",
                    format!("seq {}", e.seq),
                    format!(
                        "the export starts at {} but its header says {}",
                        e.seq, h.from_seq
                    ),
                    vec![line_no],
                );
            }
        }
        let restore = e.kind.replace('_', "").eq_ignore_ascii_case("restore");
        let key = format!("{}/{}", e.tenant, e.key);
        match last_seq {
            Some((prev, _)) if restore && e.seq > prev => {}
            Some((prev, prev_line)) if e.seq != prev + 1 => report.violate(
                "AUDIT-SEQ",
                key.clone(),
                format!("sequence {prev} is followed by {}", e.seq),
                vec![prev_line, line_no],
            ),
            None if e.gap_before => report.violate(
                "AUDIT-SEQ",
                key.clone(),
                format!("the stream starts after a gap (at {})", e.seq),
                vec![line_no],
            ),
            _ => {}
        }
        last_seq = Some((e.seq, line_no));
        if restore {
            // The restored table's holders are not in the stream.
            locks.clear();
            partial = true;
            floor = e.token;
            continue;
        }

        let lease = lease_name(&e.lease_id);
        let Some(mode) = mode_of(&e) else {
            return Err(Error::Malformed {
                line: line_no,
                message: format!(
                    "mode {:?} with limit {} (EXCLUSIVE or SHARED without a limit, SEMAPHORE with one)",
                    e.mode.as_deref().unwrap_or("EXCLUSIVE"),
                    e.limit
                ),
            });
        };
        let exclusive = mode == Mode::Exclusive;
        let lock = locks.entry((e.tenant.clone(), e.key.clone())).or_default();
        let kind = e.kind.replace('_', "").to_ascii_lowercase();
        let unknown = partial && !lock.known;
        // Waits and lock-delays say nothing of the holders, and a shared or
        // semaphore lease's transitions say nothing of the others'.
        lock.known |= exclusive
            && !matches!(
                kind.as_str(),
                "leasewait" | "leasewaitcancel" | "lockdelayset" | "lockdelayclear"
            );
        let holding = lock.active.iter().position(|a| a.lease == lease);
        let this = Active {
            lease: lease.clone(),
            line: line_no,
            mode,
        };
        match kind.as_str() {
            "leaseacquire" => {
                if e.token <= floor {
                    report.violate(
                        "AUDIT-TOKEN",
                        key.clone(),
                        format!("token {} at or below the restore's floor {floor}", e.token),
                        vec![line_no],
                    );
                }
                let clash = if exclusive {
                    lock.active.first()
                } else {
                    lock.active.iter().find(|a| a.mode == Mode::Exclusive)
                };
                if let Some(holder) = clash {
                    let message = if exclusive && holder.mode == Mode::Exclusive {
                        format!(
                            "lease {lease} granted while lease {} is ACTIVE",
                            holder.lease
                        )
                    } else {
                        format!(
                            "lease {lease} granted {} while lease {} is ACTIVE {}",
                            upper(mode),
                            holder.lease,
                            upper(holder.mode)
                        )
                    };
                    report.violate(
                        "AUDIT-ONE-ACTIVE",
                        key.clone(),
                        message,
                        vec![holder.line, line_no],
                    );
                } else if let Mode::Semaphore(n) = mode
                    && lock.active.len() >= n as usize
                {
                    let leases: Vec<&str> = lock.active.iter().map(|a| a.lease.as_str()).collect();
                    let mut lines: Vec<usize> = lock.active.iter().map(|a| a.line).collect();
                    lines.push(line_no);
                    report.violate(
                        "AUDIT-ONE-ACTIVE",
                        key.clone(),
                        format!(
                            "{} ACTIVE leases of a semaphore of {n}: lease {lease} granted while leases {} are ACTIVE",
                            leases.len() + 1,
                            leases.join(", ")
                        ),
                        lines,
                    );
                }
                if let Some(last) = lock.last_token
                    && e.token != last + 1
                {
                    report.violate(
                        "AUDIT-TOKEN",
                        key.clone(),
                        format!("token {} granted after token {last}", e.token),
                        vec![line_no],
                    );
                }
                lock.last_token = Some(e.token);
                // The grant happened: it holds, and whoever it clashed with
                // does not.
                if exclusive {
                    lock.active.clear();
                } else {
                    lock.active.retain(|a| a.mode != Mode::Exclusive);
                }
                lock.active.push(this);
            }
            "leaserelease" | "leaseexpire" | "forcerelease" if unknown => {
                if exclusive {
                    lock.active.clear();
                } else if let Some(at) = holding {
                    lock.active.remove(at);
                }
            }
            "leaserenew" if unknown => {
                if exclusive {
                    lock.active = vec![this];
                } else if holding.is_none() {
                    lock.active.push(this);
                }
            }
            "leaserelease" | "leaseexpire" | "forcerelease" => {
                // A force-release of an exclusive lease or of none frees the lock.
                let frees_all = e.kind.contains("orce")
                    && (exclusive || lease.is_empty() || e.lease_id.is_null());
                match holding {
                    Some(at) => {
                        lock.active.remove(at);
                    }
                    None if frees_all && !lock.active.is_empty() => lock.active.clear(),
                    None => report.violate(
                        "AUDIT-ONE-ACTIVE",
                        key.clone(),
                        format!("{} of lease {lease}, which is not the ACTIVE lease", e.kind),
                        vec![line_no],
                    ),
                }
            }
            "leaserenew" => {
                if holding.is_none() {
                    report.violate(
                        "AUDIT-ONE-ACTIVE",
                        key.clone(),
                        format!("renewal of lease {lease}, which is not the ACTIVE lease"),
                        vec![line_no],
                    );
                }
            }
            "leasewait" | "leasewaitcancel" | "lockdelayset" | "lockdelayclear" => {}
            other => {
                return Err(Error::Malformed {
                    line: line_no,
                    message: format!("unknown audit kind {other:?}"),
                });
            }
        }
    }
    if let Some(h) = &range {
        match last_seq {
            Some((last, line)) if last != h.to_seq => report.violate(
                "AUDIT-SEQ",
                format!("seq {last}"),
                format!("the export ends at {last} but its header says {}", h.to_seq),
                vec![line],
            ),
            None if h.from_seq <= h.to_seq => report.violate(
                "AUDIT-SEQ",
                "header".to_owned(),
                format!(
                    "no events, but the header says {}..={}",
                    h.from_seq, h.to_seq
                ),
                vec![1],
            ),
            _ => {}
        }
    }
    report.keys = locks.len() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, kind: &str, lease: u64, token: u64) -> String {
        format!(
            r#"{{"seq":{seq},"kind":"{kind}","tenant":"t","key":"k","lease_id":{lease},"owner":"o","token":{token}}}"#
        )
    }

    #[test]
    fn tn_check_002_a_clean_stream_passes() {
        let s = [
            ev(1, "LeaseAcquire", 1, 1),
            ev(2, "LeaseWait", 2, 0),
            ev(3, "LeaseExpire", 1, 1),
            ev(4, "LeaseAcquire", 2, 2),
            ev(5, "LeaseRelease", 2, 2),
        ]
        .join("\n");
        let r = check_audit(&s).unwrap();
        assert_eq!(r.verdict(), "pass", "{r}");
        assert_eq!((r.operations, r.keys), (5, 1));
    }

    #[test]
    fn tn_check_002_gaps_two_active_leases_and_skipped_tokens_are_violations() {
        let s = [ev(1, "LeaseAcquire", 1, 1), ev(3, "LeaseAcquire", 2, 3)].join("\n");
        let r = check_audit(&s).unwrap();
        let found: Vec<&str> = r.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(
            found,
            ["AUDIT-SEQ", "AUDIT-ONE-ACTIVE", "AUDIT-TOKEN"],
            "{r}"
        );
        assert_eq!(r.verdict(), "violation");
        assert_eq!(r.violations[1].lines, vec![1, 2]);
    }

    fn change(seq: u64, kind: &str, key: &str, lease: u64, token: u64) -> String {
        format!(
            r#"{{"seq":{seq},"at":"1970-01-01T00:00:00.000Z","kind":"{kind}","tenant":"t","key":"{key}","lease":"{lease:016x}","owner":"o","token":{token},"actor":"o","reason":null}}"#
        )
    }

    #[test]
    fn tn_bak_006_a_change_log_export_holds_its_whole_range() {
        let header = r#"{"type":"header","format":"tenure-changes/1","from_seq":5,"to_seq":8,"source_node":1,"exported_at":"x"}"#;
        // From the middle: the first release of a lock whose holder came
        // before the range is taken as it comes.
        let good = [
            header.to_owned(),
            change(5, "LEASE_WAIT", "k", 9, 0),
            change(6, "LEASE_RELEASE", "k", 3, 4),
            change(7, "LEASE_ACQUIRE", "k", 9, 5),
            change(8, "LEASE_RENEW", "j", 2, 1),
        ]
        .join("\n");
        let r = check_audit(&good).unwrap();
        assert_eq!(r.verdict(), "pass", "{r}");
        // A missing event, a short end, a wrong start.
        let missing = [
            header.to_owned(),
            change(5, "LEASE_WAIT", "k", 9, 0),
            change(7, "LEASE_WAIT", "k", 10, 0),
            change(8, "LEASE_WAIT", "k", 11, 0),
        ]
        .join("\n");
        assert_eq!(check_audit(&missing).unwrap().verdict(), "violation");
        let short = [header.to_owned(), change(5, "LEASE_WAIT", "k", 9, 0)].join("\n");
        assert_eq!(check_audit(&short).unwrap().verdict(), "violation");
        let late = [
            header.to_owned(),
            change(6, "LEASE_WAIT", "k", 9, 0),
            change(7, "LEASE_WAIT", "k", 9, 0),
            change(8, "LEASE_WAIT", "k", 9, 0),
        ]
        .join("\n");
        assert_eq!(check_audit(&late).unwrap().verdict(), "violation");
        let foreign = header.replace("tenure-changes/1", "tenure-changes/9");
        assert!(check_audit(&foreign).is_err());
    }

    #[test]
    fn tn_bak_006_a_restore_may_jump_the_sequence_and_raises_the_floor() {
        let s = [
            ev(1, "LeaseAcquire", 1, 1),
            change(1_000_002, "RESTORE", "", 0, 1_000_001),
            change(1_000_003, "LEASE_RELEASE", "k", 1, 1),
            change(1_000_004, "LEASE_ACQUIRE", "k", 7, 1_000_002),
        ]
        .join("\n");
        let r = check_audit(&s).unwrap();
        assert_eq!(r.verdict(), "pass", "{r}");
        // A grant at or below the floor is a violation.
        let low = [
            change(1, "RESTORE", "", 0, 100),
            change(2, "LEASE_ACQUIRE", "k", 7, 3),
        ]
        .join("\n");
        let r = check_audit(&low).unwrap();
        assert_eq!(r.violations[0].invariant, "AUDIT-TOKEN", "{r}");
    }

    #[test]
    fn tn_check_002_the_watch_shape_is_read_too() {
        let s = concat!(
            r#"{"sequence":7,"kind":"LEASE_ACQUIRE","tenant_id":"t","lock_key":"k","lease_id":"00000000000000a1","owner_id":"o","fencing_token":4,"actor":"o","detail":"","gap_before":false}"#,
            "\n",
            r#"{"sequence":8,"kind":"LEASE_RELEASE","tenant_id":"t","lock_key":"k","lease_id":"00000000000000a1","owner_id":"o","fencing_token":4,"actor":"o","detail":"","gap_before":false}"#
        );
        let r = check_audit(s).unwrap();
        assert_eq!(r.verdict(), "pass", "{r}");
        assert!(matches!(
            check_audit("{\"seq\":1}"),
            Err(Error::Parse { line: 1, .. })
        ));
    }
}
