//! Lock modes in the checker (TN-MODE-005): shared holders together,
//! semaphores up to their limit, exclusive holders alone, in the history's
//! INV-1, INV-2 and INV-3 and in the audit export check.

use serde_json::json;
use tenure_check::history::{Event, History};
use tenure_check::{Error, Limits, Mode, Report, check_audit, check_history};

mod common;

use common::H;

impl H {
    fn invoke(&mut self, p: u64, t: u64, mode: &serde_json::Value) -> &mut Self {
        self.ev(p, "acquire", "invoke", t, mode.clone())
    }
    fn acquire(
        &mut self,
        p: u64,
        (from, to): (u64, u64),
        mode: &serde_json::Value,
        lease: &str,
        token: u64,
        deadline: u64,
    ) -> &mut Self {
        self.invoke(p, from, mode)
            .granted(p, to, lease, token, deadline)
    }
    fn report(&self) -> Report {
        check_history(&self.text(), Limits::default()).expect("parses")
    }
}

fn shared() -> serde_json::Value {
    json!({"mode": "shared"})
}

fn exclusive() -> serde_json::Value {
    json!({})
}

fn semaphore(n: u32) -> serde_json::Value {
    json!({"mode": "semaphore", "limit": n})
}

fn invariants(r: &Report) -> Vec<&'static str> {
    r.violations.iter().map(|v| v.invariant).collect()
}

#[test]
fn tn_mode_005_overlapping_shared_holders_pass() {
    let mut h = H::default();
    h.acquire(1, (0, 10), &shared(), "a", 1, 1_000)
        .acquire(2, (20, 30), &shared(), "b", 2, 1_000)
        .get(3, 40, 50, Some("a"), 2)
        .release(1, 60, 70, "a")
        .get(3, 80, 90, Some("b"), 2)
        .release(2, 100, 110, "b")
        .acquire(1, (120, 130), &exclusive(), "c", 3, 1_000)
        .get(3, 140, 150, Some("c"), 3);
    let r = h.report();
    assert_eq!(r.verdict(), "pass", "{r}");
    assert_eq!((r.operations, r.keys), (8, 1));
}

#[test]
fn tn_mode_005_an_exclusive_holder_overlapping_a_shared_one_breaks_inv_1() {
    // Exclusive granted while a shared holder is valid.
    let mut h = H::default();
    h.acquire(1, (0, 10), &shared(), "a", 1, 1_000).acquire(
        2,
        (20, 30),
        &exclusive(),
        "b",
        2,
        1_000,
    );
    let r = h.report();
    let found = invariants(&r);
    assert!(found.contains(&"INV-1"), "{r}");
    assert!(found.contains(&"INV-3"), "{r}");
    let inv1: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.invariant == "INV-1")
        .collect();
    assert_eq!(inv1.len(), 1, "{r}");
    assert_eq!(inv1[0].lines, vec![2, 4]);
    assert!(inv1[0].message.contains("(process 1, shared)"), "{r}");

    // Shared granted while an exclusive holder is valid.
    let mut h = H::default();
    h.acquire(1, (0, 10), &exclusive(), "a", 1, 1_000).acquire(
        2,
        (20, 30),
        &shared(),
        "b",
        2,
        1_000,
    );
    let r = h.report();
    let inv1: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.invariant == "INV-1")
        .collect();
    assert_eq!(inv1.len(), 1, "{r}");
    assert_eq!(inv1[0].lines, vec![2, 4]);

    // Once the shared holder has let go (half-open: its release is sent at
    // the grant's instant), the exclusive grant is fine.
    let mut h = H::default();
    h.acquire(1, (0, 10), &shared(), "a", 1, 1_000)
        .ev(2, "acquire", "invoke", 20, json!({}))
        .ev(1, "release", "invoke", 30, json!({"lease_id": "a"}))
        .granted(2, 30, "b", 2, 1_000)
        .ev(1, "release", "ok", 40, json!({"lease_id": "a"}));
    let r = h.report();
    assert_eq!(r.verdict(), "pass", "{r}");
}

#[test]
fn tn_mode_005_three_holders_of_a_semaphore_of_two_break_inv_1_and_inv_3_two_do_not() {
    let mut h = H::default();
    h.acquire(1, (0, 10), &semaphore(2), "a", 1, 1_000)
        .acquire(2, (20, 30), &semaphore(2), "b", 2, 1_000)
        .get(4, 40, 50, Some("a"), 2);
    let r = h.report();
    assert_eq!(r.verdict(), "pass", "{r}");

    // A third ok grant, no releases, no expiry: too many holders.
    h.acquire(3, (60, 70), &semaphore(2), "c", 3, 1_000);
    let r = h.report();
    let found = invariants(&r);
    assert!(found.contains(&"INV-3"), "{r}");
    let inv1: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.invariant == "INV-1")
        .collect();
    assert_eq!(inv1.len(), 1, "{r}");
    assert!(
        inv1[0].message.contains("3 holders of a semaphore of 2"),
        "{r}"
    );
    assert_eq!(inv1[0].lines, vec![2, 4, 8]);
    // Tokens still went up by one: no INV-2.
    assert!(!found.contains(&"INV-2"), "{r}");
}

#[test]
fn tn_mode_005_inv_3_takes_shared_grants_answered_in_either_order() {
    for first_back in [1u64, 2] {
        // Both invoked before either returns; tokens 1 and 2 may reach
        // their clients in either order.
        let (early, late) = if first_back == 1 { (1, 2) } else { (2, 1) };
        let mut h = H::default();
        h.invoke(1, 0, &shared())
            .invoke(2, 5, &shared())
            .granted(early, 20, if early == 1 { "a" } else { "b" }, early, 1_000)
            .granted(late, 30, if late == 1 { "a" } else { "b" }, late, 1_000)
            // The first holder is the one granted token 1.
            .get(3, 40, 50, Some("a"), 2);
        let r = h.report();
        assert_eq!(r.verdict(), "pass", "{first_back}: {r}");
    }
    // A get must see the first holder in grant order, not a later one.
    let mut h = H::default();
    h.acquire(1, (0, 10), &shared(), "a", 1, 1_000)
        .acquire(2, (20, 30), &shared(), "b", 2, 1_000)
        .get(3, 40, 50, Some("b"), 2);
    assert_eq!(invariants(&h.report()), ["INV-3"]);
}

#[test]
fn tn_mode_005_inv_3_takes_a_semaphore_history() {
    let mut h = H::default();
    h.acquire(1, (0, 10), &semaphore(2), "a", 1, 1_000)
        .acquire(2, (20, 30), &semaphore(2), "b", 2, 1_000)
        // Full: refused.
        .invoke(3, 40, &semaphore(2))
        .ev(3, "acquire", "fail", 50, json!({"reason": "LOCK_HELD"}))
        .release(1, 60, 70, "a")
        .acquire(3, (80, 90), &semaphore(2), "c", 3, 1_000)
        // a left: b is the first holder now.
        .get(4, 100, 110, Some("b"), 3);
    let r = h.report();
    assert_eq!(r.verdict(), "pass", "{r}");

    // Holders whose deadlines passed may have expired, any of them.
    let mut h = H::default();
    h.acquire(1, (0, 10), &semaphore(2), "a", 1, 100)
        .acquire(2, (20, 30), &semaphore(2), "b", 2, 1_000)
        .acquire(3, (150, 160), &semaphore(2), "c", 3, 1_000)
        .get(4, 170, 180, Some("b"), 3);
    let r = h.report();
    assert_eq!(r.verdict(), "pass", "{r}");
}

#[test]
fn tn_mode_005_inv_2_orders_exclusive_grants_against_the_others() {
    // A shared holder gone, then an exclusive grant with an older token.
    let mut h = H::default();
    h.acquire(1, (0, 10), &shared(), "a", 5, 1_000)
        .release(1, 20, 30, "a")
        .acquire(2, (40, 50), &exclusive(), "b", 4, 1_000);
    let r = h.report();
    let inv2: Vec<_> = r
        .violations
        .iter()
        .filter(|v| v.invariant == "INV-2")
        .collect();
    assert_eq!(inv2.len(), 1, "{r}");
    assert_eq!(inv2[0].lines, vec![2, 6]);

    // Two shared holders' grants arriving out of token order are fine.
    let mut h = H::default();
    h.invoke(1, 0, &shared())
        .invoke(2, 5, &shared())
        .granted(2, 20, "b", 2, 1_000)
        .granted(1, 30, "a", 1, 1_000);
    assert!(!invariants(&h.report()).contains(&"INV-2"));
}

#[test]
fn tn_mode_005_modes_parse_and_bad_pairs_are_parse_errors() {
    let line = |extra: serde_json::Value| {
        let mut e = json!({"process": 1, "op": "acquire", "type": "invoke", "time_ns": 0, "clock_ns": 0, "tenant": "t", "key": "k"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e.to_string()
    };
    for bad in [
        json!({"mode": "semaphore"}),
        json!({"mode": "semaphore", "limit": 0}),
        json!({"mode": "shared", "limit": 2}),
        json!({"limit": 2}),
        json!({"mode": "bogus"}),
    ] {
        let text = format!("{}\n{}", line(json!({"op": "get"})), line(bad.clone()));
        assert!(
            matches!(History::parse(&text), Err(Error::Parse { line: 2, .. })),
            "{bad}"
        );
        assert!(check_history(&text, Limits::default()).is_err(), "{bad}");
    }

    let ops = |text: &str| History::parse(text).unwrap().ops;
    assert_eq!(ops(&line(json!({})))[0].mode, Mode::Exclusive);
    assert_eq!(ops(&line(shared()))[0].mode, Mode::Shared);
    assert_eq!(ops(&line(semaphore(3)))[0].mode, Mode::Semaphore(3));
    // Without a mode on the invocation, the completion's is taken.
    let mut h = H::default();
    h.invoke(1, 0, &exclusive()).ev(
        1,
        "acquire",
        "fail",
        10,
        json!({"reason": "LOCK_HELD", "mode": "shared"}),
    );
    assert_eq!(ops(&h.lines.join("\n"))[0].mode, Mode::Shared);

    // An exclusive line reads and writes as it did before modes.
    let old = r#"{"process":3,"op":"acquire","type":"ok","time_ns":5000,"clock_ns":5021,"tenant":"t","key":"k","lease_id":"00000000000000a1","token":7,"deadline_ns":9005021}"#;
    let mut e: Event = serde_json::from_str(old).unwrap();
    assert_eq!(e.mode(), Ok(None));
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
    e.set_mode(Mode::Semaphore(4));
    let text = serde_json::to_string(&e).unwrap();
    assert!(text.ends_with(r#""mode":"semaphore","limit":4}"#), "{text}");
    assert_eq!(e.mode(), Ok(Some(Mode::Semaphore(4))));
    e.set_mode(Mode::Exclusive);
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
}

const HEADER: &str = r#"{"type":"header","format":"tenure-changes/1","from_seq":1,"to_seq":TO,"source_node":1,"exported_at":"x"}"#;

/// A `tenure-changes/1` export of `events` (kind, lease, token, mode, limit).
fn export(events: &[(&str, u64, u64, Option<&str>, u32)]) -> String {
    let mut lines = vec![HEADER.replace("TO", &events.len().to_string())];
    for (i, (kind, lease, token, mode, limit)) in events.iter().enumerate() {
        let mut e = json!({"seq": i + 1, "at": "1970-01-01T00:00:00.000Z", "kind": kind, "tenant": "t", "key": "k", "lease": format!("{lease:016x}"), "owner": "o", "token": token, "actor": "o", "reason": null});
        if let Some(m) = mode {
            e["mode"] = json!(m);
        }
        if *limit > 0 {
            e["limit"] = json!(limit);
        }
        lines.push(e.to_string());
    }
    lines.join("\n")
}

#[test]
fn tn_mode_005_the_audit_check_takes_a_shared_export() {
    let s = Some("SHARED");
    let text = export(&[
        ("LEASE_ACQUIRE", 1, 1, s, 0),
        ("LEASE_ACQUIRE", 2, 2, s, 0),
        ("LEASE_RENEW", 1, 1, s, 0),
        ("LEASE_RELEASE", 1, 1, s, 0),
        ("LEASE_WAIT", 3, 0, None, 0),
        ("LEASE_EXPIRE", 2, 2, s, 0),
        ("LEASE_ACQUIRE", 3, 3, None, 0),
        ("FORCE_RELEASE", 3, 3, Some("EXCLUSIVE"), 0),
        ("LEASE_ACQUIRE", 4, 4, Some("SEMAPHORE"), 2),
        ("LEASE_ACQUIRE", 5, 5, Some("SEMAPHORE"), 2),
        ("FORCE_RELEASE", 4, 4, Some("SEMAPHORE"), 2),
        ("LEASE_ACQUIRE", 6, 6, Some("SEMAPHORE"), 2),
    ]);
    let r = check_audit(&text).unwrap();
    assert_eq!(r.verdict(), "pass", "{r}");
    assert_eq!((r.operations, r.keys), (12, 1));

    // Two shared leases from before a partial stream may both end in it.
    let from_middle = export(&[
        ("LEASE_RELEASE", 1, 1, s, 0),
        ("LEASE_RELEASE", 2, 2, s, 0),
        ("LEASE_ACQUIRE", 3, 3, None, 0),
        ("LEASE_RELEASE", 3, 3, None, 0),
    ])
    .replace(r#""from_seq":1,"to_seq":4"#, r#""from_seq":7,"to_seq":10"#)
    .replace(r#""seq":1,"#, r#""seq":7,"#)
    .replace(r#""seq":2,"#, r#""seq":8,"#)
    .replace(r#""seq":3,"#, r#""seq":9,"#)
    .replace(r#""seq":4,"#, r#""seq":10,"#);
    let r = check_audit(&from_middle).unwrap();
    assert_eq!(r.verdict(), "pass", "{r}");

    // A bad mode is not an export this build reads.
    let bad = export(&[("LEASE_ACQUIRE", 1, 1, Some("SEMAPHORE"), 0)]);
    assert!(matches!(
        check_audit(&bad),
        Err(Error::Malformed { line: 2, .. })
    ));
}

#[test]
fn tn_mode_005_the_audit_check_refuses_a_third_holder_of_a_semaphore_of_two() {
    let sem = Some("SEMAPHORE");
    let text = export(&[
        ("LEASE_ACQUIRE", 1, 1, sem, 2),
        ("LEASE_ACQUIRE", 2, 2, sem, 2),
        ("LEASE_ACQUIRE", 3, 3, sem, 2),
    ]);
    let r = check_audit(&text).unwrap();
    assert_eq!(invariants(&r), ["AUDIT-ONE-ACTIVE"], "{r}");
    assert!(
        r.violations[0]
            .message
            .contains("3 ACTIVE leases of a semaphore of 2"),
        "{r}"
    );
    assert_eq!(r.violations[0].lines, vec![2, 3, 4]);

    // An exclusive grant beside a shared lease, and a shared one beside an
    // exclusive lease.
    let text = export(&[
        ("LEASE_ACQUIRE", 1, 1, Some("SHARED"), 0),
        ("LEASE_ACQUIRE", 2, 2, None, 0),
        ("LEASE_ACQUIRE", 3, 3, Some("SHARED"), 0),
    ]);
    let r = check_audit(&text).unwrap();
    assert_eq!(
        invariants(&r),
        ["AUDIT-ONE-ACTIVE", "AUDIT-ONE-ACTIVE"],
        "{r}"
    );
    assert_eq!(r.violations[0].lines, vec![2, 3]);
    assert_eq!(r.violations[1].lines, vec![3, 4]);
}
