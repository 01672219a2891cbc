//! `tenure demo`: the lease table in one process, told as a story.
//!
//! This is not the cluster. It drives a [`Table`] directly, with a pretend
//! leader that keeps deadlines on a virtual clock and proposes `Expire` when
//! one passes, as the time model does (docs/time.md, rules 1 and 2), so
//! that the story can show contention, a waiting acquire, keep-alives, an
//! expiry during a pause, the hand-off to the waiter and a stale fenced
//! write refused.

use std::collections::BTreeMap;
use std::io::Write;

use tenure_core::{
    Acquire, Applied, ApplyCtx, AuditKind, Command, Expire, FencedResource, LeaseId, LeaseView,
    Release, Reply, Table, TableConfig,
};

use crate::error::Error;

const TENANT: &str = "demo";
const KEY: &str = "orders/rebalance";

struct Demo<'w, W: Write> {
    table: Table,
    index: u64,
    now_ms: u64,
    /// The pretend leader's deadlines, on its virtual monotonic clock.
    deadlines: BTreeMap<LeaseId, u64>,
    out: &'w mut W,
    json: bool,
    /// Audit lines of the last command, printed after the line that tells it.
    pending: Vec<String>,
}

impl<W: Write> Demo<'_, W> {
    fn say(&mut self, who: &str, what: &str) -> Result<(), Error> {
        if !self.json {
            let t = self.now_ms as f64 / 1000.0;
            writeln!(self.out, "[t={t:>6.3}s] {who:<6} {what}")?;
        }
        for line in self.pending.drain(..) {
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    fn apply(&mut self, command: Command) -> Result<Applied, Error> {
        self.index += 1;
        let ctx = ApplyCtx {
            index: self.index,
            at_ms: self.now_ms,
        };
        let applied = self.table.apply(ctx, command);
        for e in &applied.events {
            let Some(id) = e.lease_id else { continue };
            match e.kind {
                AuditKind::LeaseAcquire | AuditKind::LeaseWait => {
                    let ttl = self.table.lease(TENANT, id).map_or(0, |l| l.ttl_ms);
                    self.deadlines.insert(id, self.now_ms + ttl);
                }
                AuditKind::LeaseRenew => {}
                _ => {
                    self.deadlines.remove(&id);
                }
            }
            if self.json {
                self.pending.push(serde_json::to_string(e)?);
            } else {
                let token = if e.token > 0 {
                    format!(" token={}", e.token)
                } else {
                    String::new()
                };
                self.pending.push(format!(
                    "{:>18} audit #{} {}{token}",
                    "",
                    e.seq,
                    e.kind.as_str()
                ));
            }
        }
        Ok(applied)
    }

    fn acquire(
        &mut self,
        owner: &str,
        rid: &str,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Result<Applied, Error> {
        self.apply(Command::Acquire(Acquire {
            tenant: TENANT.into(),
            key: KEY.into(),
            owner: owner.into(),
            request_id: rid.into(),
            ttl_ms,
            wait_timeout_ms: wait_ms,
        }))
    }

    /// A keep-alive: checked by the table, the deadline moved by the leader.
    fn keep_alive(&mut self, who: &str, lease: &LeaseView) -> Result<(), Error> {
        match self.table.check_renew(TENANT, lease.id, who) {
            Ok(l) => {
                self.deadlines.insert(l.id, self.now_ms + l.ttl_ms);
                self.say(
                    who,
                    &format!("keep-alive: lease good for another {} ms", l.ttl_ms),
                )
            }
            Err(e) => self.say(who, &format!("keep-alive refused: {}", e.reason())),
        }
    }

    /// Moves the virtual clock, expiring leases whose deadline passes.
    fn advance(&mut self, ms: u64) -> Result<(), Error> {
        let until = self.now_ms + ms;
        loop {
            let due = self
                .deadlines
                .iter()
                .find(|(_, d)| **d <= until)
                .map(|(id, d)| (*id, *d));
            let Some((id, deadline)) = due else { break };
            self.now_ms = self.now_ms.max(deadline);
            self.deadlines.remove(&id);
            self.apply(Command::Expire(Expire {
                lease_id: id,
                expected_version: None,
            }))?;
            self.say(
                "leader",
                &format!("deadline of lease {id} passed: Expire applied"),
            )?;
        }
        self.now_ms = until;
        Ok(())
    }
}

fn lease_of(applied: Applied, what: &'static str) -> Result<LeaseView, Error> {
    match applied.result {
        Ok(Reply::Lease(l)) => Ok(l),
        Ok(_) => Err(Error::Unexpected(what)),
        Err(source) => Err(Error::Refused { what, source }),
    }
}

/// Runs the story, writing it (or the audit events as JSON lines) to `out`.
pub fn run(out: &mut impl Write, json: bool, ttl_ms: u64) -> Result<(), Error> {
    let config = TableConfig {
        min_ttl_ms: 1,
        ..TableConfig::default()
    };
    let table = Table::new(config).map_err(|source| Error::Refused {
        what: "the demo configuration",
        source,
    })?;
    let mut d = Demo {
        table,
        index: 0,
        now_ms: 0,
        deadlines: BTreeMap::new(),
        out,
        json,
        pending: Vec::new(),
    };
    let mut store = FencedResource::new();
    if !json {
        writeln!(
            d.out,
            "Tenure demo: one lease table in this process (no cluster, no disk yet).\n"
        )?;
    }

    let alice = lease_of(d.acquire("alice", "a-1", ttl_ms, 0)?, "alice's acquire")?;
    d.say(
        "alice",
        &format!(
            "acquired {KEY}: lease {}, fencing token {}",
            alice.id, alice.token
        ),
    )?;

    match d.acquire("bob", "b-1", ttl_ms, 0)?.result {
        Err(e) => d.say("bob", &format!("acquire refused: {} ({e})", e.reason()))?,
        Ok(_) => return Err(Error::Unexpected("bob's first acquire")),
    }
    let bob = lease_of(
        d.acquire("bob", "b-2", ttl_ms, 3 * ttl_ms)?,
        "bob's waiting acquire",
    )?;
    d.say(
        "bob",
        &format!("queued: lease {} is {}", bob.id, bob.state.as_str()),
    )?;

    d.advance(ttl_ms * 6 / 10)?;
    d.keep_alive("alice", &alice)?;
    d.keep_alive("bob", &bob)?;
    store
        .admit(KEY, alice.token)
        .map_err(|source| Error::Refused {
            what: "alice's write",
            source,
        })?;
    d.say(
        "alice",
        &format!("wrote to the store with token {}: accepted", alice.token),
    )?;

    d.say("alice", "pauses (a long GC): no more keep-alives")?;
    for _ in 0..3 {
        d.advance(ttl_ms / 2)?;
        d.keep_alive("bob", &bob)?;
    }
    let bob_now = d
        .table
        .lease(TENANT, bob.id)
        .map_err(|source| Error::Refused {
            what: "bob's lease",
            source,
        })?;
    d.say(
        "bob",
        &format!(
            "holds {KEY} now: {} with token {}",
            bob_now.state.as_str(),
            bob_now.token
        ),
    )?;
    store
        .admit(KEY, bob_now.token)
        .map_err(|source| Error::Refused {
            what: "bob's write",
            source,
        })?;
    d.say(
        "bob",
        &format!("wrote to the store with token {}: accepted", bob_now.token),
    )?;

    match store.admit(KEY, alice.token) {
        Err(e) => d.say(
            "alice",
            &format!(
                "wakes up, writes with token {}: {} ({e})",
                alice.token,
                e.reason()
            ),
        )?,
        Ok(()) => return Err(Error::Unexpected("alice's late write")),
    }

    let released = lease_of(
        d.apply(Command::Release(Release {
            tenant: TENANT.into(),
            lease_id: bob.id,
            owner: "bob".into(),
            request_id: "b-3".into(),
        }))?,
        "bob's release",
    )?;
    d.say(
        "bob",
        &format!(
            "released: lease {} is {}",
            released.id,
            released.state.as_str()
        ),
    )?;
    let lock = d.table.lock(TENANT, KEY);
    let digest = d.table.digest_hex();
    d.say(
        "table",
        &format!(
            "lock free={} last token={}; digest {}",
            lock.active.is_none(),
            lock.last_token,
            &digest[..16]
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_tells_its_story_and_refuses_the_stale_write() {
        let mut out = Vec::new();
        super::run(&mut out, false, 10_000).expect("demo runs");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("acquire refused: LOCK_HELD"), "{text}");
        assert!(text.contains("STALE_FENCING_TOKEN"), "{text}");
        assert!(
            text.contains("holds orders/rebalance now: ACTIVE with token 2"),
            "{text}"
        );
    }

    #[test]
    fn the_demo_prints_gap_free_audit_events_as_json_lines() {
        let mut out = Vec::new();
        super::run(&mut out, true, 10_000).expect("demo runs");
        let text = String::from_utf8(out).expect("utf-8");
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["seq"]
                    .as_u64()
                    .expect("seq")
            })
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert!(seqs.len() >= 5);
    }
}
