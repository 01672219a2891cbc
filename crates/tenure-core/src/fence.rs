//! The downstream side of fencing: a resource that refuses stale tokens.
//!
//! A lock alone cannot stop a holder that paused past its lease from writing
//! late. The fencing token can: the storage it writes to remembers the highest
//! token it accepted per key and refuses anything lower (LS-FENCE-001). A
//! repeated token is the same holder writing again and is accepted, so one
//! grant may make many writes; only a token *below* the highest is stale.

use std::collections::BTreeMap;

use crate::error::Error;

/// A guard in front of a downstream store, one highest token per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FencedResource {
    highest: BTreeMap<String, u64>,
}

impl FencedResource {
    /// A resource that has seen no token yet.
    pub fn new() -> FencedResource {
        FencedResource::default()
    }

    /// Accepts a write under `token` for `key`, or refuses it as stale.
    pub fn admit(&mut self, key: &str, token: u64) -> Result<(), Error> {
        let last = self.highest(key);
        if token < last || token == 0 {
            return Err(Error::StaleFencingToken {
                key: key.to_owned(),
                token,
                last,
            });
        }
        if token > last {
            self.highest.insert(key.to_owned(), token);
        }
        Ok(())
    }

    /// The highest token accepted for `key` (0: none).
    pub fn highest(&self, key: &str) -> u64 {
        self.highest.get(key).copied().unwrap_or(0)
    }
}
