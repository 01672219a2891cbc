//! Lock modes: EXCLUSIVE, SHARED and semaphores of N (TN-MODE-001,
//! TN-MODE-003, TN-MODE-004, TN-MODE-007), rule by rule on the table.

mod common;

use common::{Driver, TTL};
use tenure_core::{
    AuditKind, CancelCause, Command, EndReason, Error, LeaseId, LeaseState, Mode, Reason,
    TableConfig,
};

fn reason<T: std::fmt::Debug>(r: Result<T, Error>) -> Reason {
    r.expect_err("expected a refusal").reason()
}

fn holders(d: &Driver, key: &str) -> Vec<LeaseId> {
    d.table
        .lock("t", key)
        .holders
        .iter()
        .map(|l| l.id)
        .collect()
}

#[test]
fn tn_mode_001_shared_holders_share_and_each_grant_takes_the_next_token() {
    let mut d = Driver::default();
    let a = d.acquire_in("k", "A", "a", Mode::Shared, 0).unwrap();
    let b = d.acquire_in("k", "B", "b", Mode::Shared, 0).unwrap();
    let c = d.acquire_in("k", "C", "c", Mode::Shared, 0).unwrap();
    assert_eq!((a.token, b.token, c.token), (1, 2, 3));
    assert!(
        [&a, &b, &c]
            .iter()
            .all(|l| l.state == LeaseState::Active && l.mode == Mode::Shared)
    );
    let lock = d.table.lock("t", "k");
    assert_eq!(holders(&d, "k"), vec![a.id, b.id, c.id]);
    assert_eq!(
        lock.active.map(|l| l.id),
        Some(a.id),
        "active is the oldest holder"
    );
    assert_eq!(lock.limit, 0);
    // No exclusive holder while any shared one holds.
    assert_eq!(
        reason(d.acquire_in("k", "W", "w", Mode::Exclusive, 0)),
        Reason::LockHeld
    );
    d.release("t", a.id, "A", "a2").unwrap();
    d.release("t", b.id, "B", "b2").unwrap();
    assert_eq!(
        reason(d.acquire_in("k", "W", "w2", Mode::Exclusive, 0)),
        Reason::LockHeld
    );
    d.release("t", c.id, "C", "c2").unwrap();
    let w = d.acquire_in("k", "W", "w3", Mode::Exclusive, 0).unwrap();
    assert_eq!(w.token, 4);
    // And no shared holder beside an exclusive one.
    assert_eq!(
        reason(d.acquire_in("k", "A", "a3", Mode::Shared, 0)),
        Reason::LockHeld
    );
    // EXCLUSIVE is today's behaviour: the default command is unchanged.
    assert_eq!(reason(d.acquire("t", "k", "B", "b3")), Reason::LockHeld);
}

#[test]
fn tn_mode_001_a_semaphore_holds_at_most_its_limit() {
    let mut d = Driver::default();
    let sem = Mode::Semaphore(2);
    let a = d.acquire_in("pool", "A", "a", sem, 0).unwrap();
    let b = d.acquire_in("pool", "B", "b", sem, 0).unwrap();
    assert_eq!((a.token, b.token), (1, 2));
    assert_eq!(d.table.lock("t", "pool").limit, 2);
    assert_eq!(
        reason(d.acquire_in("pool", "C", "c", sem, 0)),
        Reason::LockHeld
    );
    // A waiter gets the slot the next release frees, with the next token.
    let c = d.acquire_in("pool", "C", "c2", sem, 5_000).unwrap();
    assert_eq!(c.state, LeaseState::Waiting);
    d.release("t", a.id, "A", "a2").unwrap();
    let c = d.table.lease("t", c.id).unwrap();
    assert_eq!((c.state, c.token), (LeaseState::Active, 3));
    assert_eq!(holders(&d, "pool"), vec![b.id, c.id]);
    // A semaphore of 1 is a mutex of its own kind.
    let one = d.acquire_in("m", "A", "m1", Mode::Semaphore(1), 0).unwrap();
    assert_eq!(one.token, 1);
    assert_eq!(
        reason(d.acquire_in("m", "B", "m2", Mode::Semaphore(1), 0)),
        Reason::LockHeld
    );
}

#[test]
fn tn_mode_003_a_busy_key_keeps_its_kind_and_an_idle_one_takes_any() {
    let mut d = Driver::default();
    let a = d.acquire_in("k", "A", "a", Mode::Semaphore(3), 0).unwrap();
    let contents = |d: &Driver| (d.table.lock("t", "k"), d.table.stats(), d.table.audit_seq());
    let before = contents(&d);
    for (mode, rid) in [
        (Mode::Exclusive, "x1"),
        (Mode::Shared, "x2"),
        (Mode::Semaphore(2), "x3"),
        (Mode::Semaphore(4), "x4"),
    ] {
        for wait in [0, 5_000] {
            let r = d.acquire_in("k", "B", &format!("{rid}-{wait}"), mode, wait);
            assert_eq!(
                reason(r),
                Reason::LockModeConflict,
                "{mode} on a semaphore of 3"
            );
        }
    }
    let refused = d.acquire_in("k", "B", "y", Mode::Exclusive, 0).unwrap_err();
    assert!(
        refused.to_string().contains("a semaphore of 3"),
        "{refused}"
    );
    assert_eq!(contents(&d), before, "a refusal changes nothing");
    d.release("t", a.id, "A", "a2").unwrap();
    // Idle: it becomes a read-write lock.
    let w = d.acquire_in("k", "B", "z", Mode::Exclusive, 0).unwrap();
    assert_eq!(w.token, 2);
    let r = d.acquire_in("k", "C", "z2", Mode::Semaphore(3), 5_000);
    assert_eq!(reason(r), Reason::LockModeConflict);
    // A waiter alone keeps the kind too.
    let mut d = Driver::default();
    let x = d.acquire_in("q", "A", "a", Mode::Exclusive, 0).unwrap();
    d.acquire_in("q", "B", "b", Mode::Shared, 5_000).unwrap();
    d.release("t", x.id, "A", "a2").unwrap();
    assert_eq!(
        reason(d.acquire_in("q", "C", "c", Mode::Semaphore(2), 0)),
        Reason::LockModeConflict
    );
    // A semaphore of 0 is not a semaphore.
    assert_eq!(
        reason(d.acquire_in("z", "A", "a", Mode::Semaphore(0), 0)),
        Reason::InvalidRequest
    );
}

#[test]
fn tn_mode_004_a_waiting_writer_holds_back_later_readers() {
    let mut d = Driver::default();
    let r1 = d.acquire_in("k", "R1", "r1", Mode::Shared, 0).unwrap();
    let w = d.acquire_in("k", "W", "w", Mode::Exclusive, 5_000).unwrap();
    assert_eq!(w.state, LeaseState::Waiting);
    // A reader that comes after the writer waits (no starvation)...
    assert_eq!(
        reason(d.acquire_in("k", "R2", "r2", Mode::Shared, 0)),
        Reason::LockHeld
    );
    let r2 = d.acquire_in("k", "R2", "r2b", Mode::Shared, 5_000).unwrap();
    let r3 = d.acquire_in("k", "R3", "r3", Mode::Shared, 5_000).unwrap();
    let w2 = d
        .acquire_in("k", "W2", "w2", Mode::Exclusive, 5_000)
        .unwrap();
    let r4 = d.acquire_in("k", "R4", "r4", Mode::Shared, 5_000).unwrap();
    assert!(
        [&r2, &r3, &w2, &r4]
            .iter()
            .all(|l| l.state == LeaseState::Waiting)
    );
    // ...and the writer is next when the reader leaves.
    d.release("t", r1.id, "R1", "r1b").unwrap();
    let lease = |d: &Driver, id| d.table.lease("t", id).unwrap();
    assert_eq!(
        (lease(&d, w.id).state, lease(&d, w.id).token),
        (LeaseState::Active, 2)
    );
    assert_eq!(lease(&d, r2.id).state, LeaseState::Waiting);
    // The writer's release grants both readers at its head in the same
    // apply, each with its own token, and stops at the next writer.
    let applied = d.apply(Command::Release(tenure_core::Release {
        tenant: "t".into(),
        lease_id: w.id,
        owner: "W".into(),
        request_id: "w-rel".into(),
    }));
    let grants: Vec<(LeaseId, u64)> = applied
        .events
        .iter()
        .filter(|e| e.kind == AuditKind::LeaseAcquire)
        .map(|e| (e.lease_id.unwrap(), e.token))
        .collect();
    assert_eq!(grants, vec![(r2.id, 3), (r3.id, 4)]);
    let last = applied.events.last().unwrap();
    assert_eq!(
        last.holders.iter().map(|h| h.lease_id).collect::<Vec<_>>(),
        vec![r2.id, r3.id]
    );
    assert_eq!(lease(&d, w2.id).state, LeaseState::Waiting);
    assert_eq!(lease(&d, r4.id).state, LeaseState::Waiting);
    // A writer at the head that gives up lets the readers behind it in.
    let applied = d.apply(Command::CancelWait(tenure_core::CancelWait {
        lease_id: w2.id,
        cause: CancelCause::WaitTimeout,
    }));
    assert_eq!(lease(&d, r4.id).state, LeaseState::Active);
    assert_eq!(lease(&d, r4.id).token, 5);
    assert!(
        applied
            .events
            .iter()
            .any(|e| e.kind == AuditKind::LeaseAcquire)
    );
}

#[test]
fn tn_mode_004_expiry_and_force_release_free_slots_and_grant_what_fits() {
    let mut d = Driver::default();
    let sem = Mode::Semaphore(2);
    let a = d.acquire_in("p", "A", "a", sem, 0).unwrap();
    let b = d.acquire_in("p", "B", "b", sem, 0).unwrap();
    let c = d.acquire_in("p", "C", "c", sem, 5_000).unwrap();
    let e = d.acquire_in("p", "E", "e", sem, 5_000).unwrap();
    d.expire(a.id);
    assert_eq!(d.table.lease("t", c.id).unwrap().state, LeaseState::Active);
    assert_eq!(d.table.lease("t", e.id).unwrap().state, LeaseState::Waiting);
    // Force-release of one holder frees its slot only.
    let lock = d
        .apply(Command::ForceRelease(tenure_core::ForceRelease {
            tenant: "t".into(),
            key: "p".into(),
            actor: "admin".into(),
            reason: "drain".into(),
            lease_id: Some(b.id),
        }))
        .result
        .unwrap();
    let tenure_core::Reply::Lock(lock) = lock else {
        panic!("a lock")
    };
    assert_eq!(
        lock.holders.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![c.id, e.id]
    );
    assert_eq!(
        d.table.lease("t", b.id).unwrap().ended,
        Some(EndReason::ForceReleased)
    );
    // Without a lease: every holder goes.
    let lock = d.force_release("t", "p", "maintenance").unwrap();
    assert!(lock.holders.is_empty() && lock.active.is_none());
    assert_eq!(lock.last_token, 4);
    // Shared holders: all freed at once, the waiting writer granted after.
    let r1 = d.acquire_in("s", "R1", "r1", Mode::Shared, 0).unwrap();
    let r2 = d.acquire_in("s", "R2", "r2", Mode::Shared, 0).unwrap();
    let w = d.acquire_in("s", "W", "w", Mode::Exclusive, 5_000).unwrap();
    let lock = d.force_release("t", "s", "maintenance").unwrap();
    assert_eq!(
        lock.holders.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![w.id]
    );
    for id in [r1.id, r2.id] {
        assert_eq!(
            d.table.lease("t", id).unwrap().ended,
            Some(EndReason::ForceReleased)
        );
    }
}

#[test]
fn tn_mode_007_lock_delay_quotas_and_request_memory_apply_per_grant() {
    // Lock-delay: one expired shared holder stops new grants until it clears.
    let mut d = Driver::new(TableConfig {
        lock_delay_ms: 5_000,
        max_waiters_per_lock: 2,
        ..TableConfig::default()
    });
    let a = d.acquire_in("k", "A", "a", Mode::Shared, 0).unwrap();
    let b = d.acquire_in("k", "B", "b", Mode::Shared, 0).unwrap();
    d.expire(a.id);
    assert!(d.table.lock("t", "k").delayed);
    assert_eq!(
        holders(&d, "k"),
        vec![b.id],
        "the other reader keeps its grant"
    );
    assert_eq!(
        reason(d.acquire_in("k", "C", "c", Mode::Shared, 0)),
        Reason::LockHeld
    );
    d.release("t", b.id, "B", "b2").unwrap();
    assert_eq!(
        reason(d.acquire_in("k", "C", "c2", Mode::Shared, 0)),
        Reason::LockDelayed
    );
    let c = d.acquire_in("k", "C", "c3", Mode::Shared, 5_000).unwrap();
    d.clear_delay("t", "k");
    assert_eq!(d.table.lease("t", c.id).unwrap().token, 3);
    // Quotas: a key's holders, like its waiters, stay within
    // max_waiters_per_lock; so does a semaphore's limit.
    d.acquire_in("k", "D", "d", Mode::Shared, 0).unwrap();
    assert_eq!(
        reason(d.acquire_in("k", "E", "e", Mode::Shared, 0)),
        Reason::TooManyWaiters
    );
    assert_eq!(
        reason(d.acquire_in("z", "E", "e2", Mode::Semaphore(3), 0)),
        Reason::InvalidRequest
    );
    // Request memory: a retry answers with the same lease; the same id with
    // another mode is another request.
    let mut d = Driver::default();
    let s = d
        .acquire_in("m", "A", "same", Mode::Semaphore(2), 0)
        .unwrap();
    assert_eq!(
        d.acquire_in("m", "A", "same", Mode::Semaphore(2), 0)
            .unwrap()
            .id,
        s.id
    );
    assert_eq!(
        reason(d.acquire_in("m", "A", "same", Mode::Shared, 0)),
        Reason::RequestIdReused
    );
    assert_eq!(
        reason(d.acquire_in("m", "A", "same", Mode::Semaphore(3), 0)),
        Reason::RequestIdReused
    );
    assert_eq!(d.table.lock("t", "m").holders.len(), 1);
    let _ = TTL;
}
