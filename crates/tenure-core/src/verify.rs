//! The table's invariants, checked as a whole.
//!
//! `apply` asserts each invariant where it makes it; this module checks the
//! whole table at once, for property tests after every step and for snapshots
//! read from disk, which must be refused rather than trusted.

use std::collections::BTreeSet;

use crate::lease::LeaseState;
use crate::table::Table;

impl Table {
    /// Checks every invariant of the table; the error names the first broken.
    pub fn verify(&self) -> Result<(), String> {
        let s = &self.state;
        s.config.validate().map_err(|e| e.to_string())?;
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
                if let Some(id) = lock.active {
                    let l = s
                        .leases
                        .get(&id)
                        .ok_or(format!("{at}: holder {id} missing"))?;
                    if l.state != LeaseState::Active || &l.tenant != tenant || &l.key != key {
                        return Err(format!("{at}: holder {id} is not an ACTIVE lease of it"));
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
                if !lock.queue.is_empty() && lock.active.is_none() && !lock.delayed {
                    return Err(format!("{at}: waiters behind a free lock"));
                }
                for id in &lock.queue {
                    let l = s
                        .leases
                        .get(id)
                        .ok_or(format!("{at}: waiter {id} missing"))?;
                    if l.state != LeaseState::Waiting || &l.tenant != tenant || &l.key != key {
                        return Err(format!("{at}: waiter {id} is not a WAITING lease of it"));
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
                LeaseState::Active if lock.active != Some(*id) => {
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
                _ => {}
            }
            if l.token > lock.last_token {
                return Err(format!(
                    "lease {id}: token {} above its lock's {}",
                    l.token, lock.last_token
                ));
            }
            if l.version == 0 || l.id.index() > s.last_index {
                return Err(format!(
                    "lease {id}: version 0 or created after the last index"
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
        for (index, id) in &s.ended {
            if *index < last || !s.leases.get(id).is_some_and(|l| l.state.is_terminal()) {
                return Err(format!(
                    "forgetting queue out of order or names live lease {id}"
                ));
            }
            last = *index;
        }
        if s.ended.len() as u64 > s.config.lease_retention_count {
            return Err("more terminal leases kept than the retention count".into());
        }
        if s.requests.len() as u64 > s.config.request_retention_count {
            return Err("more request ids kept than the retention count".into());
        }
        s.requests.verify()
    }
}
