//! The clock port: the one place outside tests that reads a system clock,
//! and the node's clocks as the lease timers see them.
//!
//! Deadlines live on the node's monotonic clock ([`NodeClock::now`], over
//! `tokio::time`, which simulations drive); the wall clock only stamps
//! audit events with the proposer's reading and decides nothing
//! (docs/time.md, rule 1). A simulation gives each host its own
//! [`NodeClock`], with a rate drift and a wall-clock offset that can step,
//! to show that offsets do not matter and that drift within `max_drift`
//! does not either.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The wall clock in Unix milliseconds, for audit records only.
#[allow(clippy::disallowed_methods)] // this is the clock port
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How far below its base a local reading may go: a wall clock stepped
/// back by less than this still reads as an `Instant`.
const HEADROOM: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
struct Inner {
    /// True time when the clock was made.
    created: Instant,
    /// The local reading at `created` (true time plus headroom).
    base: Instant,
    /// Local seconds per true second.
    rate: f64,
    /// The wall clock at `created`, Unix ms; `None`: the system's.
    wall_epoch_ms: Option<u64>,
    /// Steps of the wall clock so far (an operator or NTP set it), ms.
    wall_steps_ms: AtomicI64,
    /// Negative control: deadlines on the wall clock, steps and all.
    wall_deadlines: bool,
}

/// A node's clocks: the monotonic one its lease deadlines live on, and the
/// wall clock that stamps audit events. Cheap to clone; clones share steps.
#[derive(Clone, Debug)]
pub struct NodeClock {
    inner: Arc<Inner>,
}

impl Default for NodeClock {
    fn default() -> NodeClock {
        NodeClock::system()
    }
}

impl NodeClock {
    /// The machine's clocks: `tokio::time` and the system wall clock.
    pub fn system() -> NodeClock {
        NodeClock::make(1.0, None)
    }

    /// A simulated host's clocks: the monotonic clock runs `rate` local
    /// seconds per true second, and the wall clock starts at
    /// `wall_epoch_ms` and runs at the same rate.
    pub fn simulated(rate: f64, wall_epoch_ms: u64) -> NodeClock {
        NodeClock::make(rate, Some(wall_epoch_ms))
    }

    fn make(rate: f64, wall_epoch_ms: Option<u64>) -> NodeClock {
        let created = Instant::now();
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        NodeClock {
            inner: Arc::new(Inner {
                created,
                base: created + HEADROOM,
                rate,
                wall_epoch_ms,
                wall_steps_ms: AtomicI64::new(0),
                wall_deadlines: false,
            }),
        }
    }

    /// Negative control (simulations only): this clock's deadlines follow
    /// the wall clock, so a step of the wall clock moves every deadline.
    pub fn with_wall_deadlines(self) -> NodeClock {
        let i = &self.inner;
        NodeClock {
            inner: Arc::new(Inner {
                created: i.created,
                base: i.base,
                rate: i.rate,
                wall_epoch_ms: i.wall_epoch_ms,
                wall_steps_ms: AtomicI64::new(i.wall_steps_ms.load(Ordering::Relaxed)),
                wall_deadlines: true,
            }),
        }
    }

    /// Local seconds per true second.
    pub fn rate(&self) -> f64 {
        self.inner.rate
    }

    fn steps(&self) -> i64 {
        self.inner.wall_steps_ms.load(Ordering::Relaxed)
    }

    /// The clock deadlines are measured on, now. Monotonic: it never steps
    /// (unless this is the wall-clock negative control).
    pub fn now(&self) -> Instant {
        let i = &self.inner;
        let local = i.base + self.local_elapsed();
        if i.wall_deadlines {
            shift(local, self.steps())
        } else {
            local
        }
    }

    /// Local time since the clock was made.
    fn local_elapsed(&self) -> Duration {
        let i = &self.inner;
        let run = i.created.elapsed();
        if i.rate == 1.0 {
            run
        } else {
            run.mul_f64(i.rate)
        }
    }

    /// Sleeps until the local clock reads `at` (or a moment after: a
    /// deadline may fire late, never early).
    pub async fn sleep_until(&self, at: Instant) {
        let i = &self.inner;
        let mut target = at;
        if i.wall_deadlines {
            target = shift(target, -self.steps());
        }
        let local = target.saturating_duration_since(i.base);
        let run = if i.rate == 1.0 {
            local
        } else {
            // Rounded up, so the local clock has surely passed `at`.
            local.div_f64(i.rate) + Duration::from_millis(1)
        };
        tokio::time::sleep_until(i.created + run).await;
    }

    /// The wall clock, Unix ms: the system's, or the simulated host's.
    pub fn wall_ms(&self) -> u64 {
        let i = &self.inner;
        match i.wall_epoch_ms {
            None => wall_clock_ms(),
            Some(epoch) => {
                let run = u64::try_from(self.local_elapsed().as_millis()).unwrap_or(u64::MAX);
                epoch
                    .saturating_add(run)
                    .saturating_add_signed(self.steps())
            }
        }
    }

    /// Sets the wall clock forward (positive) or back (negative) by `ms`,
    /// as an operator or NTP might. Deadlines do not move.
    pub fn step_wall(&self, ms: i64) {
        self.inner.wall_steps_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

fn shift(at: Instant, ms: i64) -> Instant {
    let by = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        at + by
    } else {
        at.checked_sub(by).unwrap_or(at)
    }
}

/// Deliberate breaks of the time model, for the simulation's negative
/// controls only: each must make the checker report a violation. Nothing
/// on the serving path of the binary sets them; they exist so a simulation
/// can prove that it would catch the mistake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Acknowledge renewals without confirming leadership with a quorum.
    pub renew_without_read_index: bool,
    /// A new leader does not extend the leases it inherits: it counts them
    /// as due the moment it takes office.
    pub no_extension_on_promotion: bool,
    /// Answer a grant from a speculative apply, before the entry commits.
    pub grant_before_commit: bool,
    /// Give every semaphore one slot more than its callers asked for.
    pub semaphore_extra_slot: bool,
}

impl Sabotage {
    /// Whether anything is broken.
    pub fn any(&self) -> bool {
        *self != Sabotage::default()
    }
}

/// What a harness hands a node beyond its configuration: its clocks, the
/// table's starting bounds, and the negative controls.
/// [`Harness::default`] is the production setting.
#[derive(Clone, Debug, Default)]
pub struct Harness {
    /// The node's clocks.
    pub clock: NodeClock,
    /// The bounds a fresh table starts with (a simulation allows shorter
    /// TTLs than the reference's 10 s, to see more expiries per run).
    pub table: tenure_core::TableConfig,
    /// Deliberate breaks (none by default).
    pub sabotage: Sabotage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fast_clock_reads_ahead_and_sleeps_short() {
        let c = NodeClock::simulated(1.25, 1_000);
        let start = c.now();
        let t0 = Instant::now();
        c.sleep_until(start + Duration::from_millis(500)).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(401));
        assert!(c.now() >= start + Duration::from_millis(500));
        assert_eq!(c.wall_ms(), 1_501);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_step_moves_only_wall_deadlines() {
        let c = NodeClock::simulated(1.0, 0);
        let wall = c.clone().with_wall_deadlines();
        let (a, b) = (c.now(), wall.now());
        c.step_wall(5_000);
        wall.step_wall(5_000);
        assert_eq!(c.now(), a);
        assert_eq!(wall.now(), b + Duration::from_secs(5));
        assert_eq!(c.wall_ms(), 5_000);
    }
}

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    httpdate_rfc3339(at)
}

/// `at` as RFC 3339 in UTC with milliseconds.
fn httpdate_rfc3339(at: std::time::SystemTime) -> String {
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's days-to-civil).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod rfc3339_tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc_3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }
}
