//! Who is calling: bearer tokens checked against Argon2 hashes, with roles
//! and allowed tenants, or — with no auth file, for development only — the
//! `x-owner-id` metadata entry, trusted as the reference trusted it.
//!
//! The auth file is TOML, one `[[principal]]` table per caller:
//!
//! ```toml
//! [[principal]]
//! name = "billing-worker"              # becomes the owner of its leases
//! token_hash = "$argon2id$v=19$…"     # `tenure auth hash-token` prints it
//! roles = ["admin"]                    # admin: force-release, membership, backup
//! tenants = ["billing"]                # or ["*"] for every tenant
//! ```
//!
//! Argon2 is slow on purpose, so a token that verified once is remembered
//! by its SHA-256 for the life of the process.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tenure_core::Reason;
use tonic::Request;

use crate::error::ServerError;
use crate::errors::{OWNER_METADATA, ServeError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(rename = "principal", default)]
    principals: Vec<PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    token_hash: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

struct Principal {
    name: String,
    hash: String,
    admin: bool,
    tenants: Option<BTreeSet<String>>,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The principal: the owner of the leases it takes.
    pub name: String,
    /// Whether it may force-release, change membership and back up.
    pub admin: bool,
    /// The tenants it may use; `None`: every tenant.
    pub tenants: Option<BTreeSet<String>>,
}

impl Identity {
    /// FORBIDDEN unless the caller may use `tenant`.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), ServeError> {
        match &self.tenants {
            Some(allowed) if !allowed.contains(tenant) => Err(ServeError::refused(
                Reason::Forbidden,
                format!("{} may not use tenant {tenant:?}", self.name),
            )),
            _ => Ok(()),
        }
    }

    /// FORBIDDEN unless the caller has the admin role.
    pub fn check_admin(&self) -> Result<(), ServeError> {
        if self.admin {
            Ok(())
        } else {
            Err(ServeError::refused(
                Reason::Forbidden,
                format!("{} is not an admin", self.name),
            ))
        }
    }
}

enum Mode {
    Development,
    Tokens {
        principals: Vec<Principal>,
        verified: Mutex<HashMap<[u8; 32], usize>>,
    },
}

/// How this node identifies callers.
#[derive(Clone)]
pub struct Auth {
    mode: Arc<Mode>,
}

impl Auth {
    /// No auth file: identity from `x-owner-id`, admin allowed.
    pub fn development() -> Auth {
        Auth {
            mode: Arc::new(Mode::Development),
        }
    }

    /// Whether this node checks tokens.
    pub fn enforced(&self) -> bool {
        matches!(*self.mode, Mode::Tokens { .. })
    }

    /// Reads an auth file; refuses one with a malformed hash or no principal.
    pub fn from_file(path: &Path) -> Result<Auth, ServerError> {
        let bad = |m: String| ServerError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: AuthFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.principals.is_empty() {
            return Err(bad("no [[principal]]".into()));
        }
        let mut principals = Vec::new();
        for p in file.principals {
            tenure_core::validate::owner(&p.name).map_err(|e| bad(e.to_string()))?;
            PasswordHash::new(&p.token_hash)
                .map_err(|e| bad(format!("{}: token_hash: {e}", p.name)))?;
            let all = p.tenants.iter().any(|t| t == "*");
            principals.push(Principal {
                admin: p.roles.iter().any(|r| r == "admin"),
                tenants: (!all).then(|| p.tenants.into_iter().collect()),
                name: p.name,
                hash: p.token_hash,
            });
        }
        Ok(Auth {
            mode: Arc::new(Mode::Tokens {
                principals,
                verified: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The caller of `request`: OWNER_TOKEN_REQUIRED without a valid identity.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        let required = |m: &str| ServeError::refused(Reason::OwnerTokenRequired, m);
        let metadata = request.metadata();
        match &*self.mode {
            Mode::Development => {
                let name = metadata
                    .get(OWNER_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| required("no caller identity (x-owner-id)"))?;
                Ok(Identity {
                    name: name.to_owned(),
                    admin: true,
                    tenants: None,
                })
            }
            Mode::Tokens {
                principals,
                verified,
            } => {
                let token = metadata
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| required("no bearer token"))?;
                let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                let known = verified
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .copied();
                let index = match known {
                    Some(i) => i,
                    None => {
                        let i = principals
                            .iter()
                            .position(|p| {
                                PasswordHash::new(&p.hash).is_ok_and(|h| {
                                    Argon2::default()
                                        .verify_password(token.as_bytes(), &h)
                                        .is_ok()
                                })
                            })
                            .ok_or_else(|| required("unknown bearer token"))?;
                        verified
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key, i);
                        i
                    }
                };
                let p = &principals[index];
                Ok(Identity {
                    name: p.name.clone(),
                    admin: p.admin,
                    tenants: p.tenants.clone(),
                })
            }
        }
    }
}

/// An Argon2id hash of `token`, for an auth file's `token_hash`.
pub fn hash_token(token: &str) -> Result<String, ServerError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Config(format!("hashing: {e}")))
}
