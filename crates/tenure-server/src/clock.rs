//! The clock port: the one place outside tests that reads a system clock.
//!
//! Deadlines will use `tokio::time` (which simulations control); the wall
//! clock here only stamps audit events with the proposer's reading, and
//! decides nothing (shared/DESIGN.md, "Time").

/// The wall clock in Unix milliseconds, for audit records only.
#[allow(clippy::disallowed_methods)] // this is the clock port
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
