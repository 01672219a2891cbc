//! The history checker on small hand-made histories: each invariant passes
//! a correct history and names the rule, the key and the lines of a broken
//! one; a search that runs out is inconclusive, not a pass.

use serde_json::json;
use tenure_check::{Limits, check_history};

mod common;

use common::H;

impl H {
    fn acquire(
        &mut self,
        p: u64,
        from: u64,
        to: u64,
        lease: &str,
        token: u64,
        deadline: u64,
    ) -> &mut Self {
        self.ev(p, "acquire", "invoke", from, json!({}));
        self.granted(p, to, lease, token, deadline)
    }
}

fn invariants(h: &H) -> Vec<&'static str> {
    let r = check_history(&h.text(), Limits::default()).expect("parses");
    r.violations.iter().map(|v| v.invariant).collect()
}

#[test]
fn tn_check_001_a_correct_history_passes() {
    let mut h = H::default();
    h.acquire(1, 0, 10, "a", 1, 1_000)
        .get(2, 20, 30, Some("a"), 1)
        .release(1, 40, 50, "a")
        .acquire(2, 60, 70, "b", 2, 1_000)
        .get(3, 80, 90, Some("b"), 2);
    let r = check_history(&h.text(), Limits::default()).unwrap();
    assert_eq!(r.verdict(), "pass", "{r}");
    assert_eq!((r.operations, r.keys), (5, 1));
}

#[test]
fn tn_check_001_overlapping_holders_break_inv_1_and_inv_3() {
    let mut h = H::default();
    // b is granted while a's client still holds it: a never released and
    // its deadline is far away.
    h.acquire(1, 0, 10, "a", 1, 1_000)
        .acquire(2, 20, 30, "b", 2, 1_000);
    let found = invariants(&h);
    assert!(found.contains(&"INV-1"), "{found:?}");
    assert!(found.contains(&"INV-3"), "{found:?}");
    let r = check_history(&h.text(), Limits::default()).unwrap();
    let inv1 = r
        .violations
        .iter()
        .find(|v| v.invariant == "INV-1")
        .unwrap();
    assert_eq!((inv1.key.as_str(), inv1.lines.clone()), ("t/k", vec![2, 4]));
}

#[test]
fn tn_check_001_a_grant_after_the_holders_deadline_is_an_expiry_not_a_violation() {
    let mut h = H::default();
    h.acquire(1, 0, 10, "a", 1, 100)
        .acquire(2, 150, 160, "b", 2, 1_000)
        .get(3, 170, 180, Some("b"), 2);
    assert_eq!(invariants(&h), Vec::<&str>::new());
}

#[test]
fn tn_check_001_a_drifting_client_clock_is_mapped_to_true_time() {
    // Process 1's clock runs 2× fast: its deadline of 200 on its own clock
    // is true time 100, so b's grant at 150 does not overlap.
    let mut h = H::default();
    h.lines.push(json!({"process":1,"op":"acquire","type":"invoke","time_ns":0,"clock_ns":0,"tenant":"t","key":"k"}).to_string());
    h.lines.push(json!({"process":1,"op":"acquire","type":"ok","time_ns":10,"clock_ns":20,"tenant":"t","key":"k","lease_id":"a","token":1,"deadline_ns":200}).to_string());
    h.acquire(2, 150, 160, "b", 2, 1_000);
    assert_eq!(invariants(&h), Vec::<&str>::new());
}

#[test]
fn tn_check_001_a_stale_read_breaks_inv_3() {
    let mut h = H::default();
    // The lock is free (released at 50) but a later read still sees a.
    h.acquire(1, 0, 10, "a", 1, 1_000)
        .release(1, 40, 50, "a")
        .get(2, 60, 70, Some("a"), 1);
    assert_eq!(invariants(&h), ["INV-3"]);
}

#[test]
fn tn_check_001_an_unanswered_acquire_may_explain_a_token_jump() {
    let mut h = H::default();
    // Process 1's acquire got no answer but was granted token 1 and
    // expired; process 2 then gets token 2.
    h.ev(1, "acquire", "invoke", 0, json!({}))
        .ev(1, "acquire", "unknown", 5, json!({}))
        .acquire(2, 100, 110, "b", 2, 1_000);
    assert_eq!(invariants(&h), Vec::<&str>::new());
    // Without that acquire, token 2 first is not linearizable.
    let mut h = H::default();
    h.acquire(2, 100, 110, "b", 2, 1_000);
    assert_eq!(invariants(&h), ["INV-3"]);
}

#[test]
fn tn_check_001_tokens_that_go_down_and_stale_fenced_writes_break_inv_2() {
    let mut h = H::default();
    h.acquire(1, 0, 10, "a", 5, 1_000)
        .release(1, 20, 30, "a")
        .acquire(2, 40, 50, "b", 4, 1_000);
    assert!(invariants(&h).contains(&"INV-2"));

    let mut h = H::default();
    h.ev(1, "fenced-write", "invoke", 0, json!({"token": 7}))
        .ev(1, "fenced-write", "ok", 10, json!({"token": 7}))
        .ev(2, "fenced-write", "invoke", 20, json!({"token": 6}))
        .ev(2, "fenced-write", "ok", 30, json!({"token": 6}))
        .ev(3, "store-read", "invoke", 40, json!({}))
        .ev(3, "store-read", "ok", 50, json!({"applied": [7, 6]}));
    let r = check_history(&h.text(), Limits::default()).unwrap();
    let messages: Vec<&str> = r.violations.iter().map(|v| v.message.as_str()).collect();
    assert_eq!(r.violations.len(), 2, "{r}");
    assert!(messages[0].contains("accepted a write with token 6 after one with token 7"));
    assert!(messages[1].contains("out of token order"));

    let mut h = H::default();
    h.ev(1, "fenced-write", "invoke", 0, json!({"token": 7}))
        .ev(1, "fenced-write", "ok", 10, json!({"token": 7}))
        .ev(3, "store-read", "invoke", 40, json!({}))
        .ev(3, "store-read", "ok", 50, json!({"applied": []}));
    let r = check_history(&h.text(), Limits::default()).unwrap();
    assert!(
        r.violations[0].message.contains("missing from the store"),
        "{r}"
    );
}

#[test]
fn tn_check_001_a_search_that_runs_out_is_inconclusive_never_a_pass() {
    let mut h = H::default();
    for p in 0..12 {
        h.ev(p, "get", "invoke", p, json!({}));
    }
    for p in 0..12 {
        h.ev(p, "get", "ok", 100 + p, json!({"token": 0}));
    }
    let tight = Limits {
        max_steps_per_key: 5,
    };
    let r = check_history(&h.text(), tight).unwrap();
    assert_eq!(r.verdict(), "inconclusive", "{r}");
    assert_eq!(r.inconclusive[0].key, "t/k");
    let r = check_history(&h.text(), Limits::default()).unwrap();
    assert_eq!(r.verdict(), "pass", "{r}");
}

#[test]
fn tn_check_001_a_force_release_ends_the_holders_interval() {
    let mut h = H::default();
    h.acquire(1, 0, 10, "a", 1, 1_000)
        .ev(9, "force-release", "invoke", 20, json!({}))
        .ev(9, "force-release", "ok", 30, json!({}))
        .acquire(2, 40, 50, "b", 2, 1_000);
    assert_eq!(invariants(&h), Vec::<&str>::new());
}
