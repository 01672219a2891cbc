//! The table's invariants, checked as a whole.
//!
//! `apply` asserts each invariant where it makes it; this module checks the
//! whole table at once, for property tests after every step and for snapshots
//! read from disk, which must be refused rather than trusted.

use std::collections::BTreeSet;

use crate::lease::{LeaseState, Mode};
use crate::table::Table;

impl Table {
    /// Checks every invariant of the table; the error names the first broken.
    pub fn verify(&self) -> Result<(), String> {
        let s = &self.state;
        s.config.validate().map_err(|e| e.to_string())?;
        if s.extra.token_floor > s.last_index {
            return Err(format!(
                "token floor {} above the log index {}",
                s.extra.token_floor, s.last_index
            ));
        }
        if !s.extra.cluster_id.is_empty() {
            crate::restore::check_cluster_id(&s.extra.cluster_id).map_err(|e| e.to_string())?;
        }
        if let Some(p) = &s.extra.pending
            && (p.data.len() as u64 > p.begin.total_bytes || p.started > s.last_index)
        {
            return Err("the restore being staged holds more than its backup".into());
        }
        let mut queued = BTreeSet::new();
        let mut named = vec![false; s.locks.len()];
        for (tenant, t) in &s.tenants {
            if t.name != *tenant {
                return Err(format!("tenant {tenant} stored under another name"));
            }
            for (key, slot) in &t.locks {
                let at = format!("lock {tenant}/{key}");
                let lock = s
                    .locks
                    .get(*slot as usize)
                    .ok_or(format!("{at}: slot {slot} out of range"))?;
                if std::mem::replace(&mut named[*slot as usize], true) {
                    return Err(format!("{at}: slot {slot} named twice"));
                }
                if lock.last_token > s.last_index {
                    return Err(format!(
                        "{at}: token {} above the log index",
                        lock.last_token
                    ));
                }
                if !lock
                    .queue
                    .iter()
                    .zip(lock.queue.iter().skip(1))
                    .all(|(a, b)| a < b)
                {
                    return Err(format!("{at}: queue not in arrival order"));
                }
                if let Some(id) = lock.active {
                    let l = s
                        .leases
                        .get(&id)
                        .ok_or(format!("{at}: holder {id} missing"))?;
                    if l.state != LeaseState::Active || &l.tenant != tenant || &l.key != key {
                        return Err(format!("{at}: holder {id} is not an ACTIVE lease of it"));
                    }
                    if l.mode != Mode::Exclusive || !lock.shared.is_empty() || lock.limit != 0 {
                        return Err(format!("{at}: exclusive holder {id} beside other holders"));
                    }
                    if l.token != lock.last_token || l.token == 0 {
                        return Err(format!(
                            "{at}: holder token {} != last {}",
                            l.token, lock.last_token
                        ));
                    }
                    if lock.delayed {
                        return Err(format!("{at}: held and delayed at once"));
                    }
                }
                // Which modes the lock's kind takes.
                let suits = |m: Mode| match lock.limit {
                    0 => matches!(m, Mode::Exclusive | Mode::Shared),
                    n => m == Mode::Semaphore(n),
                };
                if lock.limit > 0 && lock.shared.len() > lock.limit as usize {
                    return Err(format!(
                        "{at}: {} holders of a semaphore of {}",
                        lock.shared.len(),
                        lock.limit
                    ));
                }
                let mut last_shared = 0;
                for id in &lock.shared {
                    let l = s
                        .leases
                        .get(id)
                        .ok_or(format!("{at}: holder {id} missing"))?;
                    if l.state != LeaseState::Active || &l.tenant != tenant || &l.key != key {
                        return Err(format!("{at}: holder {id} is not an ACTIVE lease of it"));
                    }
                    if l.mode == Mode::Exclusive || !suits(l.mode) {
                        return Err(format!(
                            "{at}: holder {id} is {} in a lock of limit {}",
                            l.mode, lock.limit
                        ));
                    }
                    if l.token <= last_shared || l.token > lock.last_token {
                        return Err(format!(
                            "{at}: holder {id} token {} out of grant order",
                            l.token
                        ));
                    }
                    last_shared = l.token;
                }
                if let Some(head) = lock.queue.front() {
                    let mode = s.leases.get(head).map_or(Mode::Exclusive, |l| l.mode);
                    if lock.fits(mode) {
                        return Err(format!("{at}: waiters behind a lock their head fits"));
                    }
                }
                for id in &lock.queue {
                    let l = s
                        .leases
                        .get(id)
                        .ok_or(format!("{at}: waiter {id} missing"))?;
                    if l.state != LeaseState::Waiting || &l.tenant != tenant || &l.key != key {
                        return Err(format!("{at}: waiter {id} is not a WAITING lease of it"));
                    }
                    if !suits(l.mode) {
                        return Err(format!(
                            "{at}: waiter {id} is {} in a lock of limit {}",
                            l.mode, lock.limit
                        ));
                    }
                    if !queued.insert(*id) {
                        return Err(format!("{at}: waiter {id} queued twice"));
                    }
                }
            }
        }
        if named.iter().any(|n| !n) {
            return Err("a lock record no tenant names".into());
        }
        let mut terminal = 0usize;
        for (id, l) in &s.leases {
            if *id != l.id {
                return Err(format!("lease {id} stored under the wrong id {}", l.id));
            }
            let slot = s
                .tenants
                .get(&l.tenant)
                .and_then(|t| t.locks.get(&l.key))
                .ok_or(format!("lease {id}: no lock record {}/{}", l.tenant, l.key))?;
            if *slot != l.lock {
                return Err(format!(
                    "lease {id}: slot {} but its lock is in {slot}",
                    l.lock
                ));
            }
            let lock = &s.locks[*slot as usize];
            match l.state {
                LeaseState::Active if lock.active != Some(*id) && !lock.shared.contains(id) => {
                    return Err(format!("lease {id}: ACTIVE but not its lock's holder"));
                }
                LeaseState::Waiting if !queued.contains(id) => {
                    return Err(format!("lease {id}: WAITING but not queued"));
                }
                LeaseState::Released | LeaseState::Expired => {
                    terminal += 1;
                    if l.ended.is_none() {
                        return Err(format!("lease {id}: terminal without an end reason"));
                    }
                }
                _ if l.ended.is_some() => {
                    return Err(format!("lease {id}: live with an end reason"));
                }
                _ => {}
            }
            let token_fits = match l.state {
                LeaseState::Waiting => l.token == 0,
                LeaseState::Active => l.token > 0,
                LeaseState::Released | LeaseState::Expired => true,
            };
            if !token_fits {
                return Err(format!(
                    "lease {id}: token {} does not fit {:?}",
                    l.token, l.state
                ));
            }
            if l.token > lock.last_token {
                return Err(format!(
                    "lease {id}: token {} above its lock's {}",
                    l.token, lock.last_token
                ));
            }
            if l.id.index() > s.last_index || l.id.index() == 0 {
                return Err(format!(
                    "lease {id}: created at index 0 or after the last index"
                ));
            }
            // One logged transition per entry at most, from the creating one on.
            if l.version == 0 || l.version > 1 + (s.last_index - l.id.index()) {
                return Err(format!(
                    "lease {id}: version {} impossible by index",
                    l.version
                ));
            }
        }
        if terminal != s.ended.len() {
            return Err(format!(
                "{terminal} terminal leases but {} queued for forgetting",
                s.ended.len()
            ));
        }
        let mut last = 0;
        let mut seen = BTreeSet::new();
        for (index, id) in &s.ended {
            if *index < last || *index > s.last_index {
                return Err(format!("forgetting queue out of order at lease {id}"));
            }
            if !s.leases.get(id).is_some_and(|l| l.state.is_terminal()) || !seen.insert(*id) {
                return Err(format!("forgetting queue names lease {id} twice or live"));
            }
            last = *index;
        }
        // Each entry adds at most two events of its own (a lock-delay clear
        // or set, a renewal) and each lease at most three in its life (wait,
        // grant, end), and an entry creates at most one lease.
        if s.audit_seq > s.last_index.saturating_mul(5) {
            return Err(format!(
                "audit sequence {} impossible by index",
                s.audit_seq
            ));
        }
        if s.ended.len() as u64 > s.config.lease_retention_count {
            return Err("more terminal leases kept than the retention count".into());
        }
        if s.requests.len() as u64 > s.config.request_retention_count {
            return Err("more request ids kept than the retention count".into());
        }
        s.requests.verify(s.last_index)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Acquire, ApplyCtx, Command, EndReason, LeaseId, Release, SnapshotError, Table};

    /// A table with two locks, a holder, a waiter and an ended lease.
    fn table() -> Table {
        let mut t = Table::default();
        let acquire = |key: &str, owner: &str, wait| {
            Command::Acquire(Acquire {
                tenant: "t".into(),
                key: key.into(),
                owner: owner.into(),
                request_id: "r".into(),
                ttl_ms: 10_000,
                wait_timeout_ms: wait,
            })
        };
        let cmds = [
            acquire("a", "o1", 0),
            acquire("b", "o2", 0),
            acquire("a", "o3", 1_000),
            acquire("a", "o4", 1_000),
            Command::Release(Release {
                tenant: "t".into(),
                lease_id: LeaseId::from_index(2),
                owner: "o2".into(),
                request_id: "x".into(),
            }),
        ];
        for (i, c) in cmds.into_iter().enumerate() {
            let applied = t.apply(
                ApplyCtx {
                    index: i as u64 + 1,
                    at_ms: 0,
                },
                c,
            );
            assert!(applied.result.is_ok(), "{:?}", applied.result);
        }
        t
    }

    /// One way to break a table, named.
    type Breakage = (&'static str, Box<dyn Fn(&mut Table)>);

    fn refused(t: &Table) -> bool {
        matches!(
            Table::restore(&t.snapshot()),
            Err(SnapshotError::Inconsistent(_))
        )
    }

    #[test]
    fn tn_snap_001_crafted_inconsistent_snapshots_are_refused() {
        let good = table();
        assert!(Table::restore(&good.snapshot()).is_ok());
        let id = LeaseId::from_index;
        let cases: Vec<Breakage> = vec![
            (
                "slot out of range",
                Box::new(|t| {
                    t.state
                        .tenants
                        .values_mut()
                        .for_each(|ten| ten.locks.values_mut().for_each(|s| *s = 99));
                }),
            ),
            (
                "lease on the wrong lock",
                Box::new(move |t| {
                    t.state.leases.get_mut(&id(1)).expect("lease 1").lock = 1;
                }),
            ),
            (
                "token beyond the log",
                Box::new(|t| t.state.locks[0].last_token = u64::MAX),
            ),
            (
                "duplicate ended entry",
                Box::new(|t| {
                    let first = t.state.ended[0];
                    t.state.ended.push_back(first);
                }),
            ),
            (
                "live lease with an end",
                Box::new(move |t| {
                    t.state.leases.get_mut(&id(1)).expect("lease 1").ended =
                        Some(EndReason::WaitTimedOut);
                }),
            ),
            (
                "audit sequence beyond the log",
                Box::new(|t| t.state.audit_seq = u64::MAX),
            ),
            (
                "version beyond the log",
                Box::new(move |t| {
                    t.state.leases.get_mut(&id(1)).expect("lease 1").version = u64::MAX;
                }),
            ),
            (
                "queue out of order",
                Box::new(|t| t.state.locks[0].queue.make_contiguous().reverse()),
            ),
            (
                "waiting lease with a token",
                Box::new(move |t| {
                    t.state.leases.get_mut(&id(3)).expect("lease 3").token = 1;
                }),
            ),
        ];
        for (what, break_it) in cases {
            let mut t = good.clone();
            break_it(&mut t);
            assert!(refused(&t), "restore accepted a snapshot with {what}");
        }
    }

    #[test]
    fn restore_shares_names_between_leases_and_locks() {
        let t = Table::restore(&table().snapshot()).expect("restores");
        let l1 = &t.state.leases[&LeaseId::from_index(1)];
        let l3 = &t.state.leases[&LeaseId::from_index(3)];
        assert!(std::sync::Arc::ptr_eq(&l1.key, &l3.key));
        assert!(std::sync::Arc::ptr_eq(
            &l1.tenant,
            &t.state.tenants["t"].name
        ));
    }
}
