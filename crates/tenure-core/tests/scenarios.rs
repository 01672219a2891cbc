//! Scenario scripts for the lease table (goldenscript).
//!
//! Each file in `tests/scenarios/` is a story told in commands, with the
//! table's answers and audit events recorded below each block. Regenerate on
//! purpose with `UPDATE_GOLDENFILES=1 cargo test -p tenure-core --test
//! scenarios` and review the diff like code.
//!
//! Commands (lease ids are written as the log index that created them):
//! - `acquire TENANT KEY OWNER RID [ttl=MS] [wait=MS]`
//! - `renew TENANT LEASE OWNER RID ttl=MS`, `release TENANT LEASE OWNER RID`
//! - `expire LEASE [version=N]`, `cancel LEASE timeout|abandoned`
//! - `force-release TENANT KEY reason=TEXT [lease=N] [actor=NAME]`
//! - `clear-delay TENANT KEY`, `configure FIELD=VALUE…`
//! - `lock TENANT KEY`, `dump`

mod common;

use std::error::Error as StdError;
use std::fmt::Write as _;

use common::Driver;
use goldenscript::{Command as Script, Context};
use tenure_core::{
    Acquire, Applied, CancelCause, CancelWait, ClearLockDelay, Command, Expire, ForceRelease,
    LeaseId, LeaseView, LockView, Release, Renew, Reply, TableConfig,
};

type Res<T> = Result<T, Box<dyn StdError>>;

struct Runner {
    d: Driver,
}

fn num(v: &str) -> Res<u64> {
    v.parse()
        .map_err(|e| format!("bad number {v:?}: {e}").into())
}

fn lease_line(l: &LeaseView) -> String {
    let mut s = format!(
        "lease={} {}/{} owner={} {} token={} v={} ttl={}",
        l.id.index(),
        l.tenant,
        l.key,
        l.owner,
        l.state.as_str(),
        l.token,
        l.version,
        l.ttl_ms
    );
    if let Some(e) = l.ended {
        let _ = write!(s, " ended={e:?}");
    }
    s
}

fn lock_line(l: &LockView) -> String {
    let holder = l
        .active
        .as_ref()
        .map_or("-".to_owned(), |a| a.id.index().to_string());
    format!(
        "lock {}/{} holder={} last_token={} waiters={}{}",
        l.tenant,
        l.key,
        holder,
        l.last_token,
        l.waiters,
        if l.delayed { " DELAYED" } else { "" }
    )
}

fn render(applied: Applied) -> String {
    let mut out = match applied.result {
        Ok(Reply::Lease(l)) => format!("ok {}\n", lease_line(&l)),
        Ok(Reply::Lock(l)) => format!("ok {}\n", lock_line(&l)),
        Ok(Reply::Configured(c)) => format!("ok configured {c:?}\n"),
        Ok(Reply::Unchanged) => "ok unchanged\n".to_owned(),
        Ok(Reply::Imported { index, audit_seq }) => {
            format!("ok imported index={index} audit_seq={audit_seq}\n")
        }
        Ok(Reply::Named(id)) => format!("ok named {id}\n"),
        Ok(Reply::Restore(r)) => format!("ok restored {r:?}\n"),
        Err(e) => format!("error {}: {e}\n", e.reason()),
    };
    for e in applied.events {
        let lease = e
            .lease_id
            .map_or(String::new(), |l| format!(" lease={}", l.index()));
        let detail = e.detail.map_or(String::new(), |d| format!(" ({d})"));
        let _ = writeln!(
            out,
            "  #{} {} {}/{}{} token={} by {}{}",
            e.seq,
            e.kind.as_str(),
            e.tenant,
            e.key,
            lease,
            e.token,
            e.actor,
            detail
        );
    }
    out
}

impl goldenscript::Runner for Runner {
    type Command = Script;

    fn run(&mut self, c: &Script, _ctx: &Context) -> Res<String> {
        let mut args = c.consume_args();
        let mut pos = || args.next_pos().ok_or("missing argument").map(str::to_owned);
        let command = match c.name.as_str() {
            "acquire" => {
                let (tenant, key, owner, request_id) = (pos()?, pos()?, pos()?, pos()?);
                Command::Acquire(Acquire {
                    tenant,
                    key,
                    owner,
                    request_id,
                    ttl_ms: args.take_key("ttl").map_or(Ok(10_000), num)?,
                    wait_timeout_ms: args.take_key("wait").map_or(Ok(0), num)?,
                })
            }
            "renew" => {
                let (tenant, id, owner, request_id) = (pos()?, pos()?, pos()?, pos()?);
                Command::Renew(Renew {
                    tenant,
                    lease_id: LeaseId::from_index(num(&id)?),
                    owner,
                    request_id,
                    ttl_ms: args.take_key("ttl").map_or(Ok(10_000), num)?,
                })
            }
            "release" => {
                let (tenant, id, owner, request_id) = (pos()?, pos()?, pos()?, pos()?);
                Command::Release(Release {
                    tenant,
                    lease_id: LeaseId::from_index(num(&id)?),
                    owner,
                    request_id,
                })
            }
            "expire" => Command::Expire(Expire {
                lease_id: LeaseId::from_index(num(&pos()?)?),
                expected_version: args.take_key("version").map(num).transpose()?,
            }),
            "cancel" => {
                let lease_id = LeaseId::from_index(num(&pos()?)?);
                let cause = match pos()?.as_str() {
                    "timeout" => CancelCause::WaitTimeout,
                    _ => CancelCause::Abandoned,
                };
                Command::CancelWait(CancelWait { lease_id, cause })
            }
            "force-release" => {
                let (tenant, key) = (pos()?, pos()?);
                Command::ForceRelease(ForceRelease {
                    tenant,
                    key,
                    actor: args.take_key("actor").unwrap_or("admin").to_owned(),
                    reason: args.take_key("reason").unwrap_or("").to_owned(),
                    lease_id: args
                        .take_key("lease")
                        .map(num)
                        .transpose()?
                        .map(LeaseId::from_index),
                })
            }
            "clear-delay" => {
                let (tenant, key) = (pos()?, pos()?);
                Command::ClearLockDelay(ClearLockDelay { tenant, key })
            }
            "configure" => {
                let mut cfg = TableConfig::default();
                while let Some((k, v)) = args.next_key() {
                    let v = num(v)?;
                    match k {
                        "min_ttl_ms" => cfg.min_ttl_ms = v,
                        "max_ttl_ms" => cfg.max_ttl_ms = v,
                        "lock_delay_ms" => cfg.lock_delay_ms = v,
                        "max_waiters_per_lock" => cfg.max_waiters_per_lock = u32::try_from(v)?,
                        "request_retention_entries" => cfg.request_retention_entries = v,
                        "request_retention_count" => cfg.request_retention_count = v,
                        "lease_retention_entries" => cfg.lease_retention_entries = v,
                        "lease_retention_count" => cfg.lease_retention_count = v,
                        other => return Err(format!("unknown config field {other}").into()),
                    }
                }
                Command::Configure(cfg)
            }
            "lock" => {
                let (tenant, key) = (pos()?, pos()?);
                return Ok(format!(
                    "{}\n",
                    lock_line(&self.d.table.lock(&tenant, &key))
                ));
            }
            "dump" => return Ok(self.dump()),
            other => return Err(format!("unknown command {other}").into()),
        };
        args.reject_next()?;
        Ok(render(self.d.apply(command)))
    }
}

impl Runner {
    fn dump(&self) -> String {
        let t = &self.d.table;
        let mut out = String::new();
        for tenant in ["t", "u"] {
            if let Ok(locks) = t.list(tenant, "", None, 1_000) {
                for l in locks {
                    let _ = writeln!(out, "{}", lock_line(&l));
                }
            }
        }
        for l in t.live_leases() {
            let _ = writeln!(out, "{}", lease_line(&l.view()));
        }
        let _ = writeln!(out, "{:?} audit_seq={}", t.stats(), t.audit_seq());
        out
    }
}

fn script(name: &str) {
    let path = format!("{}/tests/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut runner = Runner {
        d: Driver::default(),
    };
    goldenscript::run(&mut runner, &path)
        .expect("scenario output differs (UPDATE_GOLDENFILES=1 to regenerate)");
}

#[test]
fn scenario_a_lease_from_acquire_to_release() {
    script("lifecycle");
}

#[test]
fn scenario_waiters_are_served_first_come_first_served() {
    script("fifo");
}

#[test]
fn scenario_an_expiry_holds_the_key_for_the_lock_delay() {
    script("lock_delay");
}

#[test]
fn scenario_request_ids_are_retries_not_new_requests() {
    script("request_ids");
}

#[test]
fn scenario_an_operator_force_releases_a_wedged_lock() {
    script("force_release");
}
