//! Snapshots and the table digest.
//!
//! A snapshot is the whole replicated state, encoded with postcard behind a
//! format number, so a node can refuse a snapshot from a build it does not
//! understand instead of misreading it (docs/reference.md, bug 2: the
//! reference restored keys wrongly from a hand-rolled string format). The
//! state holds only ordered maps and queues, so the encoding, and the
//! SHA-256 digest over it, is the same on every replica that holds the same
//! table (INV-5).

use crate::error::SnapshotError;
use crate::table::{State, Table};

/// The snapshot format this build writes. Format 2 added the cluster id,
/// the token floor and the restores, encoded after everything format 1
/// holds; format 3 added lock modes (a lease's mode, a lock's shared
/// holders and semaphore limit). This build reads all three.
pub const SNAPSHOT_FORMAT: u32 = 3;

/// The last format without lock modes.
const FORMAT_BEFORE_MODES: u32 = 2;

/// The oldest format this build reads.
pub const OLDEST_SNAPSHOT_FORMAT: u32 = 1;

impl Table {
    /// The whole table as bytes: the format number, then the state.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out =
            postcard::to_stdvec(&SNAPSHOT_FORMAT).expect("encoding a u32 into a Vec cannot fail");
        let state = postcard::to_stdvec(&self.state)
            .expect("the table state holds only types postcard encodes");
        out.extend_from_slice(&state);
        out
    }

    /// Reads a snapshot back, checking its format and every invariant; an
    /// unreadable or inconsistent snapshot is an error, never a panic.
    pub fn restore(bytes: &[u8]) -> Result<Table, SnapshotError> {
        let (format, rest) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| SnapshotError::Corrupt(format!("format number: {e}")))?;
        let upgraded;
        let rest = match format {
            SNAPSHOT_FORMAT | FORMAT_BEFORE_MODES => rest,
            // Format 1 is format 2 without the fields it added last: they
            // are appended at their defaults.
            OLDEST_SNAPSHOT_FORMAT => {
                let mut bytes = rest.to_vec();
                bytes.extend(
                    postcard::to_stdvec(&crate::restore::Extra::default())
                        .expect("the defaults encode"),
                );
                upgraded = bytes;
                &upgraded[..]
            }
            found => {
                return Err(SnapshotError::UnsupportedFormat {
                    found,
                    supported: SNAPSHOT_FORMAT,
                });
            }
        };
        let corrupt = |e: postcard::Error| SnapshotError::Corrupt(e.to_string());
        let (state, trailing) = if format == SNAPSHOT_FORMAT {
            postcard::take_from_bytes::<State>(rest).map_err(corrupt)?
        } else {
            let (old, trailing) =
                postcard::take_from_bytes::<crate::legacy::StateV2>(rest).map_err(corrupt)?;
            (old.upgrade().map_err(SnapshotError::Corrupt)?, trailing)
        };
        if !trailing.is_empty() {
            return Err(SnapshotError::Corrupt(format!(
                "{} bytes after the end of the state",
                trailing.len()
            )));
        }
        let mut table = Table {
            state,
            ..Table::default()
        };
        table.verify().map_err(SnapshotError::Inconsistent)?;
        table.intern();
        Ok(table)
    }

    /// SHA-256 over the encoded state: equal tables, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let state = postcard::to_stdvec(&self.state)
            .expect("the table state holds only types postcard encodes");
        Sha256::digest(&state).into()
    }

    /// The digest as 64 hex digits, for logs and status pages.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }
}

impl Table {
    /// Points every lease at its lock record's shared tenant and key names,
    /// as `apply` does: decoding gave each its own copy.
    fn intern(&mut self) {
        let tenants = &self.state.tenants;
        for lease in self.state.leases.values_mut() {
            if let Some(t) = tenants.get(&lease.tenant) {
                lease.tenant = t.name.clone();
                if let Some((key, _)) = t.locks.get_key_value(&lease.key) {
                    lease.key = key.clone();
                }
            }
        }
    }
}
