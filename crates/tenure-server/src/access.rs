//! Who may call, and how often: identification and rate limits, shared by
//! the Lock and Admin services. A handler asks once, after routing, in the
//! role the call needs: a writer of a tenant, a reader of a tenant (or of
//! every tenant), or an admin.

use std::sync::Arc;
use std::time::Duration;

use tenure_core::Reason;
use tonic::Request;

use crate::auth::{Auth, Identity};
use crate::errors::{OWNER_METADATA, ServeError};

/// One rate limiter, keyed by caller.
type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Who may call, and how often.
#[derive(Clone)]
pub struct Access {
    auth: Auth,
    /// Calls per second per caller; `None`: no limit.
    limiter: Option<Arc<Limiter>>,
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
        Access { auth, limiter }
    }

    /// Whether tokens are enforced (an auth file).
    pub fn enforced(&self) -> bool {
        self.auth.enforced()
    }

    /// RATE_LIMITED when `caller` went past its calls per second.
    fn limit(&self, caller: &str) -> Result<(), ServeError> {
        match &self.limiter {
            Some(l) if l.check_key(&caller.to_owned()).is_err() => Err(ServeError::refused(
                Reason::RateLimited,
                format!("{caller} is over its rate limit"),
            )),
            _ => Ok(()),
        }
    }

    /// The caller of a write in `tenant`.
    pub fn writer<T>(&self, request: &Request<T>, tenant: &str) -> Result<Identity, ServeError> {
        let who = self.auth.identify(request)?;
        who.check_tenant(tenant)?;
        self.limit(&who.name)?;
        Ok(who)
    }

    /// The caller of a keep-alive stream: identified once, each lease's
    /// tenant checked as it comes.
    pub fn streamer<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        let who = self.auth.identify(request)?;
        self.limit(&who.name)?;
        Ok(who)
    }

    /// A read of `tenant` (or of every tenant): any caller on a development
    /// cluster, an identified one allowed the tenant (an admin for every
    /// tenant) when tokens are enforced.
    pub fn reader<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
        all_tenants: bool,
    ) -> Result<(), ServeError> {
        let named = request
            .metadata()
            .get(OWNER_METADATA)
            .and_then(|v| v.to_str().ok());
        self.limit(named.unwrap_or("anonymous"))?;
        if self.auth.enforced() {
            let who = self.auth.identify(request)?;
            if all_tenants {
                who.check_admin()?;
            } else {
                who.check_tenant(tenant)?;
            }
        }
        Ok(())
    }

    /// The caller, who must be an admin. Without an auth file every caller
    /// is one, named by `x-owner-id` or else "admin".
    pub fn admin<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        if !self.auth.enforced() {
            let named = self.auth.identify(request).ok();
            return Ok(named.unwrap_or(Identity {
                name: "admin".into(),
                admin: true,
                tenants: None,
            }));
        }
        let who = self.auth.identify(request)?;
        who.check_admin()?;
        Ok(who)
    }

    /// Any identified caller (a status read) when tokens are enforced.
    pub fn anyone<T>(&self, request: &Request<T>) -> Result<(), ServeError> {
        if self.auth.enforced() {
            self.auth.identify(request)?;
        }
        Ok(())
    }
}
