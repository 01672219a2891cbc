//! The server's audit stream: no gaps, one ACTIVE lease per lock, tokens
//! +1 per grant.
//!
//! Reads both shapes Tenure prints: `tenure lock watch --json`
//! (`sequence`, `kind` as `LEASE_ACQUIRE`, `tenant_id`, `lock_key`,
//! `fencing_token`, `gap_before`) and `tenure demo --json` (`seq`, `kind`
//! as `LeaseAcquire`, `tenant`, `key`, `token`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;
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
    #[serde(default)]
    lease_id: serde_json::Value,
    #[serde(alias = "fencing_token", default)]
    token: u64,
    #[serde(default)]
    gap_before: bool,
}

/// What the stream says a lock is.
#[derive(Default)]
struct Lock {
    active: Option<(String, usize)>,
    last_token: Option<u64>,
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
    for (line_no, e) in crate::ndjson::<Event>(text)? {
        report.operations += 1;
        let key = format!("{}/{}", e.tenant, e.key);
        match last_seq {
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

        let lease = lease_name(&e.lease_id);
        let lock = locks.entry((e.tenant.clone(), e.key.clone())).or_default();
        match e.kind.replace('_', "").to_ascii_lowercase().as_str() {
            "leaseacquire" => {
                if let Some((holder, held_at)) = &lock.active {
                    report.violate(
                        "AUDIT-ONE-ACTIVE",
                        key.clone(),
                        format!("lease {lease} granted while lease {holder} is ACTIVE"),
                        vec![*held_at, line_no],
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
                lock.active = Some((lease, line_no));
            }
            "leaserelease" | "leaseexpire" | "forcerelease" => match &lock.active {
                Some((holder, _)) if *holder == lease || e.kind.contains("orce") => {
                    lock.active = None
                }
                _ => report.violate(
                    "AUDIT-ONE-ACTIVE",
                    key.clone(),
                    format!("{} of lease {lease}, which is not the ACTIVE lease", e.kind),
                    vec![line_no],
                ),
            },
            "leaserenew" => {
                if lock
                    .active
                    .as_ref()
                    .is_none_or(|(holder, _)| *holder != lease)
                {
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
