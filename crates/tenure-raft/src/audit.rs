//! The audit history each node keeps on its disk.
//!
//! The state machine writes the audit events of every entry it applies to
//! [`Space::Audit`], keyed by sequence number, in the same step as the
//! apply. They are made durable with the next snapshot (a full
//! `Disk::flush`), not with every log append: after a restart, openraft
//! re-applies the log after the snapshot and the same events are written
//! again under the same keys, so the history on disk has no hole a restart
//! made. A snapshot installed
//! from the leader skips entries this node never applied: the history is
//! then cleared, and it starts again after the snapshot.
//!
//! What is kept is bounded by [`AuditRetention`]: the last `max_events`
//! sequence numbers and `max_age_ms` of the proposers' wall-clock time.
//! Readers learn where the kept history starts ([`AuditHistory::first`]),
//! so a request for older events is answered with a gap, never silently.

use std::sync::Arc;

use tenure_core::{AuditEvent, AuditEventV1};

use crate::disk::{Disk, DiskError, Space};

/// How much audit history a node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRetention {
    /// The last this many sequence numbers.
    pub max_events: u64,
    /// Events whose proposer's clock is at most this old, against the
    /// newest entry's.
    pub max_age_ms: u64,
}

impl Default for AuditRetention {
    /// A million events, seven days.
    fn default() -> AuditRetention {
        AuditRetention {
            max_events: 1_000_000,
            max_age_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// Prune once per this many events written.
pub(crate) const PRUNE_EVERY: u64 = 1_024;

/// The key of event `seq`: big-endian, so keys sort as numbers.
pub fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// An event as stored.
pub(crate) fn encode(event: &AuditEvent) -> Result<Vec<u8>, DiskError> {
    postcard::to_stdvec(event).map_err(|e| DiskError::Codec {
        what: "audit event",
        detail: e.to_string(),
    })
}

/// An event read back; bytes that are not one event are an error.
pub fn decode(bytes: &[u8]) -> Result<AuditEvent, DiskError> {
    let codec = |detail: String| DiskError::Codec {
        what: "audit event",
        detail,
    };
    let whole = |(event, rest): (AuditEvent, &[u8])| {
        if rest.is_empty() {
            Ok(event)
        } else {
            Err(codec(format!("{} bytes after the event", rest.len())))
        }
    };
    match postcard::take_from_bytes::<AuditEvent>(bytes) {
        Ok(read) => whole(read),
        // Builds before lock modes stored events without `mode` and
        // `holders`: those still read, as exclusive with no holders listed.
        Err(current) => match postcard::take_from_bytes::<AuditEventV1>(bytes) {
            Ok((old, rest)) => whole((old.into(), rest)),
            Err(_) => Err(codec(current.to_string())),
        },
    }
}

type Page = dyn Fn(u64, usize) -> Result<Vec<AuditEvent>, DiskError> + Send + Sync;

/// Read access to a node's kept audit history.
#[derive(Clone)]
pub struct AuditHistory {
    page: Arc<Page>,
}

impl std::fmt::Debug for AuditHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditHistory")
    }
}

impl AuditHistory {
    /// The history on `disk`.
    pub fn on<D: Disk>(disk: D) -> AuditHistory {
        AuditHistory::from_fn(move |from, limit| {
            disk.scan_limit(Space::Audit, &key(from), limit)?
                .iter()
                .map(|(_, v)| decode(v))
                .collect()
        })
    }

    /// A history read by `page(from, limit)`: at most `limit` events with a
    /// sequence of at least `from`, in order (for tests).
    pub fn from_fn(
        page: impl Fn(u64, usize) -> Result<Vec<AuditEvent>, DiskError> + Send + Sync + 'static,
    ) -> AuditHistory {
        AuditHistory {
            page: Arc::new(page),
        }
    }

    /// At most `limit` kept events with a sequence of at least `from`.
    pub fn page(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>, DiskError> {
        (self.page)(from, limit)
    }

    /// The oldest kept sequence number (`None`: nothing kept).
    pub fn first(&self) -> Result<Option<u64>, DiskError> {
        Ok(self.page(0, 1)?.first().map(|e| e.seq))
    }
}

/// Removes what the retention no longer keeps, with `last` the newest
/// sequence written and `now_ms` the newest entry's wall clock.
pub(crate) fn prune<D: Disk>(
    disk: &D,
    retention: AuditRetention,
    last: u64,
    now_ms: u64,
) -> Result<(), DiskError> {
    let keep_from = last.saturating_sub(retention.max_events.saturating_sub(1));
    disk.remove_range(Space::Audit, &key(0), Some(&key(keep_from)))?;
    let oldest_kept = now_ms.saturating_sub(retention.max_age_ms);
    loop {
        let page = disk.scan_limit(Space::Audit, &key(0), 256)?;
        let mut cut = None;
        for (k, v) in &page {
            match decode(v) {
                Ok(e) if e.at_ms < oldest_kept => cut = Some(k.clone()),
                _ => break,
            }
        }
        let Some(cut) = cut else {
            return Ok(());
        };
        let mut end = cut.clone();
        end.push(0);
        disk.remove_range(Space::Audit, &key(0), Some(&end))?;
        if page.last().map(|(k, _)| k) != Some(&cut) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;
    use proptest::prelude::*;

    fn event(seq: u64, at_ms: u64) -> AuditEvent {
        AuditEvent {
            seq,
            index: seq,
            at_ms,
            kind: tenure_core::AuditKind::LeaseAcquire,
            tenant: "t".into(),
            key: "k".into(),
            lease_id: None,
            owner: Some("o".into()),
            token: seq,
            actor: "o".into(),
            detail: None,
            mode: tenure_core::Mode::Shared,
            holders: vec![tenure_core::Holder {
                lease_id: tenure_core::LeaseId::from_index(seq),
                owner: "o".into(),
                token: seq,
                mode: tenure_core::Mode::Shared,
            }],
        }
    }

    #[test]
    fn tn_watch_003_events_kept_before_lock_modes_still_read() {
        let old = AuditEventV1 {
            seq: 9,
            index: 12,
            at_ms: 5,
            kind: tenure_core::AuditKind::LeaseRelease,
            tenant: "t".into(),
            key: "k".into(),
            lease_id: Some(tenure_core::LeaseId::from_index(3)),
            owner: Some("o".into()),
            token: 4,
            actor: "o".into(),
            detail: None,
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        let read = decode(&bytes).unwrap();
        assert_eq!(read, AuditEvent::from(old));
        assert_eq!(read.mode, tenure_core::Mode::Exclusive);
        assert!(read.holders.is_empty());
        // Today's records read as themselves; neither shape with bytes
        // after it reads at all.
        let now = event(4, 4);
        assert_eq!(decode(&encode(&now).unwrap()).unwrap(), now);
        let mut longer = bytes.clone();
        longer.push(0);
        let mut longer_now = encode(&now).unwrap();
        longer_now.push(0);
        assert!(decode(&longer_now).is_err());
        assert!(decode(&longer).is_err());
    }

    fn write(disk: &SimDisk, events: &[AuditEvent]) {
        let records = events
            .iter()
            .map(|e| (key(e.seq).to_vec(), encode(e).unwrap()))
            .collect();
        disk.put(Space::Audit, records).unwrap();
    }

    #[test]
    fn tn_watch_003_retention_keeps_the_last_events_by_count_and_by_age() {
        let disk = SimDisk::new();
        write(
            &disk,
            &(1..=100).map(|s| event(s, s * 1_000)).collect::<Vec<_>>(),
        );
        let history = AuditHistory::on(disk.clone());
        let by_count = AuditRetention {
            max_events: 30,
            max_age_ms: u64::MAX,
        };
        prune(&disk, by_count, 100, 100_000).unwrap();
        assert_eq!(history.first().unwrap(), Some(71));
        let by_age = AuditRetention {
            max_events: u64::MAX,
            max_age_ms: 10_000,
        };
        prune(&disk, by_age, 100, 100_000).unwrap();
        assert_eq!(history.first().unwrap(), Some(90));
        let page = history.page(95, 3).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [95, 96, 97]);
    }

    proptest! {
        #[test]
        fn tn_watch_003_an_audit_record_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn tn_watch_003_an_audit_record_reads_back(seq in 1u64.., at_ms in any::<u64>()) {
            let e = event(seq, at_ms);
            prop_assert_eq!(decode(&encode(&e).unwrap()).unwrap(), e);
        }
    }
}
