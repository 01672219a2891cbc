//! Who may call, and how often: identification and rate limits, shared by
//! the Lock and Admin services. A handler asks once, after routing, in the
//! role the call needs: a writer of a tenant, a reader of a tenant (or of
//! every tenant), or an admin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tenure_core::Reason;
use tonic::Request;

use crate::auth::{Auth, Identity, Role};
use crate::errors::{ROLE_METADATA, ServeError, claims_admin};

/// One rate limiter, keyed by caller.
type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Keep-alive streams one principal may have open at once (each client
/// needs one; the benchmark runs 256 clients as one principal).
pub const MAX_STREAMS_PER_PRINCIPAL: usize = 1024;

/// Who may call, and how often.
#[derive(Clone)]
pub struct Access {
    auth: Auth,
    /// Calls per second per caller; `None`: no limit.
    limiter: Option<Arc<Limiter>>,
    /// Open keep-alive streams per principal.
    streams: Arc<Mutex<HashMap<String, usize>>>,
}

/// The caller of a long stream (keep-alive, watch), identified again after
/// the auth file reloads, so a revoked token or tenant ends its streams.
pub struct Standing {
    auth: Auth,
    probe: Request<()>,
    generation: u64,
}

impl Standing {
    /// `None` while the auth file has not reloaded since the caller was
    /// last identified; after a reload, the caller as the new file sees
    /// it. A refusal for the rate limit is not final: the next call tries
    /// again.
    pub fn recheck(&mut self) -> Option<Result<Identity, ServeError>> {
        let now = self.auth.generation();
        if now == self.generation {
            return None;
        }
        let result = self.auth.identify(&self.probe);
        tracing::debug!(
            generation = now,
            ok = result.is_ok(),
            "stream caller checked again after a reload"
        );
        match &result {
            Err(e) if e.reason() == Reason::RateLimited => None,
            _ => {
                self.generation = now;
                Some(result)
            }
        }
    }
}

/// One open keep-alive stream of a principal; dropping it frees the slot.
pub struct StreamSlot {
    streams: Arc<Mutex<HashMap<String, usize>>>,
    name: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!("tenure_keepalive_streams").decrement(1.0);
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = streams.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.name);
            }
        }
    }
}

impl Access {
    /// `auth` identifies callers; each may make `rate_limit` calls per
    /// second (0: no limit). Needs a tokio runtime (a task forgets callers
    /// that went quiet).
    pub fn new(auth: Auth, rate_limit: u32) -> Access {
        let limiter = std::num::NonZeroU32::new(rate_limit).map(|n| {
            let limiter = Arc::new(Limiter::keyed(governor::Quota::per_second(n)));
            let weak = Arc::downgrade(&limiter);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    match weak.upgrade() {
                        Some(l) => l.retain_recent(),
                        None => return,
                    }
                }
            });
            limiter
        });
        Access {
            auth,
            limiter,
            streams: Arc::default(),
        }
    }

    /// The caller of `request`, to check again while its stream lives.
    pub fn standing<T>(&self, request: &Request<T>) -> Standing {
        Standing {
            auth: self.auth.clone(),
            probe: Request::from_parts(
                request.metadata().clone(),
                request.extensions().clone(),
                (),
            ),
            generation: self.auth.generation(),
        }
    }

    /// The caller of `request`, refusals counted by reason.
    fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        self.auth.identify(request).inspect_err(|e| {
            metrics::counter!("tenure_auth_failures_total", "reason" => e.reason().as_str())
                .increment(1);
        })
    }

    /// A slot for one more keep-alive stream of `who`: RATE_LIMITED when it
    /// has [`MAX_STREAMS_PER_PRINCIPAL`] open already.
    pub fn stream_slot(&self, who: &Identity) -> Result<StreamSlot, ServeError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let open = streams.entry(who.name.clone()).or_insert(0);
        if *open >= MAX_STREAMS_PER_PRINCIPAL {
            return Err(ServeError::refused(
                Reason::RateLimited,
                format!(
                    "{} has {MAX_STREAMS_PER_PRINCIPAL} keep-alive streams open; one per client is enough",
                    who.name
                ),
            ));
        }
        *open += 1;
        metrics::gauge!("tenure_keepalive_streams").increment(1.0);
        Ok(StreamSlot {
            streams: Arc::clone(&self.streams),
            name: who.name.clone(),
        })
    }

    /// Whether tokens are enforced (an auth file).
    pub fn enforced(&self) -> bool {
        self.auth.enforced()
    }

    /// RATE_LIMITED when `caller` went past its calls per second.
    fn limit(&self, caller: &str) -> Result<(), ServeError> {
        match &self.limiter {
            Some(l) if l.check_key(&caller.to_owned()).is_err() => {
                metrics::counter!("tenure_rate_limited_total").increment(1);
                Err(ServeError::refused(
                    Reason::RateLimited,
                    format!("{caller} is over its rate limit"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The caller of a write in `tenant`: a writer allowed the tenant.
    pub fn writer<T>(&self, request: &Request<T>, tenant: &str) -> Result<Identity, ServeError> {
        let who = self.identify(request)?;
        who.check_role(Role::Writer)?;
        who.check_tenant(tenant)?;
        self.limit(&who.name)?;
        Ok(who)
    }

    /// The caller of a keep-alive stream: a writer, identified once, each
    /// lease's tenant checked as it comes.
    pub fn streamer<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        let who = self.identify(request)?;
        who.check_role(Role::Writer)?;
        self.limit(&who.name)?;
        Ok(who)
    }

    /// A read of `tenant` (or of every tenant): any caller on a development
    /// cluster, limited by the name it gives; when credentials are
    /// enforced, a reader allowed the tenant (every tenant for
    /// `all_tenants`), limited by its principal.
    pub fn reader<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
        all_tenants: bool,
    ) -> Result<(), ServeError> {
        if !self.auth.enforced() {
            let named = crate::auth::development_name(request)?;
            return self.limit(named.as_deref().unwrap_or("anonymous"));
        }
        let who = self.identify(request)?;
        who.check_role(Role::Reader)?;
        if all_tenants {
            who.check_all_tenants()?;
        } else {
            who.check_tenant(tenant)?;
        }
        self.limit(&who.name)
    }

    /// The caller, who must be an admin. Without an auth file, a caller
    /// that claims the role (`x-role: ADMIN`), named by `x-owner-id` or
    /// else "admin"; FORBIDDEN without the claim.
    pub fn admin<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        if !self.auth.enforced() {
            if !claims_admin(request) {
                return Err(ServeError::refused(
                    Reason::Forbidden,
                    format!("an admin call: claim the role with {ROLE_METADATA}: ADMIN"),
                ));
            }
            // A malformed x-owner-id is refused, never taken for no one.
            let named = crate::auth::development_name(request)?;
            return Ok(Identity::development(
                named.unwrap_or_else(|| "admin".to_owned()),
                true,
            ));
        }
        let who = self.identify(request)?;
        who.check_admin()?;
        Ok(who)
    }

    /// Any identified caller (a status read) when tokens are enforced.
    pub fn anyone<T>(&self, request: &Request<T>) -> Result<(), ServeError> {
        if self.auth.enforced() {
            self.identify(request)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn_sec_001_a_principal_has_a_bounded_number_of_keep_alive_streams() {
        let access = Access::new(Auth::development(), 0);
        let who = Identity::development("svc", false);
        let mut slots: Vec<StreamSlot> = (0..MAX_STREAMS_PER_PRINCIPAL)
            .map(|_| access.stream_slot(&who).expect("within the bound"))
            .collect();
        let refused = access.stream_slot(&who).err().expect("one too many");
        assert_eq!(refused.reason(), Reason::RateLimited);
        // Another principal is not affected.
        access
            .stream_slot(&Identity::development("other", false))
            .expect("its own bound");
        // A stream that ends frees its slot.
        slots.pop();
        let again = access.stream_slot(&who).expect("a slot freed");
        drop(again);
        drop(slots);
        assert!(
            access
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty(),
            "nothing kept for principals with no stream"
        );
    }
}
