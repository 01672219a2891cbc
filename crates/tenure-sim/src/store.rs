//! The downstream store that fenced writes go to: per key, it applies a
//! write only if its token is at least the highest it has applied (the
//! Jepsen guarded-set workload), and it remembers what it applied in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A fenced store shared by every simulated client.
#[derive(Clone, Debug)]
pub struct Store {
    applied: Arc<Mutex<BTreeMap<String, Vec<u64>>>>,
    /// Whether the store checks tokens (off only as a negative control).
    fencing: bool,
}

impl Store {
    /// A store that checks tokens when `fencing` (the real thing).
    pub fn new(fencing: bool) -> Store {
        Store {
            applied: Arc::default(),
            fencing,
        }
    }

    /// Writes under `token`: `true` if applied, `false` if refused as stale.
    pub fn write(&self, key: &str, token: u64) -> bool {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let tokens = applied.entry(key.to_owned()).or_default();
        if self.fencing && tokens.last().is_some_and(|&top| token < top) {
            return false;
        }
        tokens.push(token);
        true
    }

    /// The tokens applied for `key`, in the order applied.
    pub fn read(&self, key: &str) -> Vec<u64> {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_store_refuses_a_stale_token_and_an_unfenced_one_does_not() {
        let s = Store::new(true);
        assert!(s.write("k", 2));
        assert!(s.write("k", 2));
        assert!(!s.write("k", 1));
        assert_eq!(s.read("k"), vec![2, 2]);
        let open = Store::new(false);
        assert!(open.write("k", 2));
        assert!(open.write("k", 1));
        assert_eq!(open.read("k"), vec![2, 1]);
    }
}
