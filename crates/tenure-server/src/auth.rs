//! Who is calling: a client certificate, or a bearer token checked against
//! an Argon2 hash, each naming a principal of the auth file with its roles
//! and tenants; or — with no auth file, for development only — the
//! `x-owner-id` metadata entry, trusted as the reference trusted it.
//!
//! The auth file is TOML, one `[[principal]]` table per caller:
//!
//! ```toml
//! [[principal]]
//! name = "billing-worker"              # becomes the owner of its leases
//! token_id = "5f0c2a9e41d7b3c8"       # the token's public part
//! token_hash = "$argon2id$v=19$…"     # `tenure auth new-token` prints both
//! roles = ["writer"]                   # writer (default), reader, admin
//! tenants = ["billing"]                # or ["*"] for every tenant
//! ```
//!
//! A principal without `token_hash` authenticates only by a client
//! certificate naming it (`--client-ca`). Names, token ids and hashes are
//! unique; an unknown role, a malformed hash or a duplicate refuses the
//! whole file.
//!
//! Argon2 is slow on purpose, so no call costs more than one verification:
//! a token `tnr_<id>_<secret>` (what `tenure auth new-token` makes) is
//! looked up by its id and checked against that one hash; a token that
//! verified is remembered (by its SHA-256) until the file reloads, one that
//! failed is refused at once for [`FAILED_FOR`]; and verifications that
//! are not remembered are limited per remote address before any is made.
//! Tokens made before ids existed (`tenure auth hash-token`, entries
//! without `token_id`) keep working, checked against each such entry.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tenure_core::Reason;
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::error::ServerError;
use crate::errors::{OWNER_METADATA, ServeError, claims_admin};
use crate::peers::Peers;
use crate::tls::client_chain;

/// Set by a follower that forwards a call from a client it authenticated
/// by certificate: the principal. Believed only from a member node.
pub const ON_BEHALF_OF: &str = "tenure-on-behalf-of";

/// Set by a follower that forwards a call: the caller's address, for the
/// leader's per-address limit. Believed only from a member node.
pub const FORWARDED_FOR: &str = "tenure-forwarded-for";

/// How long a token that failed verification is refused without another.
pub const FAILED_FOR: Duration = Duration::from_secs(30);

/// Verifications (of tokens not remembered) one remote address may cause
/// per second, and at once.
pub const VERIFICATIONS_PER_SECOND: u32 = 5;
/// See [`VERIFICATIONS_PER_SECOND`].
pub const VERIFICATIONS_BURST: u32 = 20;

/// Failed tokens remembered at most; beyond, the oldest half is forgotten.
const FAILED_MAX: usize = 10_000;

/// The prefix of tokens with an id part.
pub const TOKEN_PREFIX: &str = "tnr_";

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
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    token_hash: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    tenants: Vec<String>,
}

/// What a principal may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Force-release, membership, backup and restore, configuration.
    pub admin: bool,
    /// Acquire, renew, release and keep-alive in its tenants.
    pub writer: bool,
    /// Get, list and watch in its tenants.
    pub reader: bool,
}

impl Roles {
    /// Every role.
    pub const ALL: Roles = Roles {
        admin: true,
        writer: true,
        reader: true,
    };

    /// The names an auth file may use.
    pub const NAMES: [&'static str; 3] = ["admin", "writer", "reader"];

    /// Roles from their names; `None` is the default, writer. An unknown
    /// name is an error.
    pub fn parse(names: Option<&[String]>) -> Result<Roles, String> {
        let Some(names) = names else {
            return Ok(Roles {
                writer: true,
                ..Roles::default()
            });
        };
        let mut roles = Roles::default();
        for n in names {
            match n.as_str() {
                "admin" => roles.admin = true,
                "writer" => roles.writer = true,
                "reader" => roles.reader = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?} (roles: {})",
                        Roles::NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(roles)
    }
}

/// A role a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// See [`Roles::admin`].
    Admin,
    /// See [`Roles::writer`].
    Writer,
    /// See [`Roles::reader`].
    Reader,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

struct Principal {
    name: String,
    hash: Option<String>,
    roles: Roles,
    tenants: Option<BTreeSet<String>>,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The principal: the owner of the leases it takes.
    pub name: String,
    /// What it may do.
    pub roles: Roles,
    /// The tenants it may use; `None`: every tenant.
    pub tenants: Option<BTreeSet<String>>,
}

impl Identity {
    /// A development caller: writer and reader of every tenant, and admin
    /// only when it claims the role (`x-role: ADMIN`).
    pub fn development(name: impl Into<String>, admin: bool) -> Identity {
        Identity {
            name: name.into(),
            roles: Roles {
                admin,
                ..Roles::ALL
            },
            tenants: None,
        }
    }

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

    /// FORBIDDEN unless the caller may use every tenant.
    pub fn check_all_tenants(&self) -> Result<(), ServeError> {
        match &self.tenants {
            Some(_) => Err(ServeError::refused(
                Reason::Forbidden,
                format!("{} may not read every tenant", self.name),
            )),
            None => Ok(()),
        }
    }

    /// FORBIDDEN unless the caller has `role`.
    pub fn check_role(&self, role: Role) -> Result<(), ServeError> {
        let has = match role {
            Role::Admin => self.roles.admin,
            Role::Writer => self.roles.writer,
            Role::Reader => self.roles.reader,
        };
        if has {
            Ok(())
        } else {
            Err(ServeError::refused(
                Reason::Forbidden,
                format!("{} does not have the {} role", self.name, role.name()),
            ))
        }
    }

    /// FORBIDDEN unless the caller has the admin role.
    pub fn check_admin(&self) -> Result<(), ServeError> {
        self.check_role(Role::Admin)
    }
}

/// The caller a development node (no auth file) is told of by
/// `x-owner-id`: `None` when the header is absent or empty, INVALID_REQUEST
/// when it is not a valid owner id (so a malformed one is never taken for
/// no one).
pub fn development_name<T>(request: &Request<T>) -> Result<Option<String>, ServeError> {
    let Some(value) = request.metadata().get(OWNER_METADATA) else {
        return Ok(None);
    };
    let invalid = |m: String| ServeError::refused(Reason::InvalidRequest, m);
    let name = value
        .to_str()
        .map_err(|_| invalid(format!("{OWNER_METADATA} is not printable ASCII")))?
        .trim();
    if name.is_empty() {
        return Ok(None);
    }
    tenure_core::validate::owner(name).map_err(|e| invalid(format!("{OWNER_METADATA}: {e}")))?;
    Ok(Some(name.to_owned()))
}

/// One loaded auth file.
struct Book {
    principals: Vec<Principal>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    /// Entries with a hash and no token id (made by `hash-token`).
    legacy: Vec<usize>,
    /// Tokens that verified, by SHA-256: the principal.
    verified: Mutex<HashMap<[u8; 32], usize>>,
    /// Tokens that failed, by SHA-256: when.
    failed: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Book {
    fn load(path: &Path) -> Result<Book, ServerError> {
        let bad = |m: String| ServerError::Config(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Book::parse(&text).map_err(bad)
    }

    fn parse(text: &str) -> Result<Book, String> {
        let file: AuthFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.principals.is_empty() {
            return Err("no [[principal]]".into());
        }
        let mut book = Book {
            principals: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            legacy: Vec::new(),
            verified: Mutex::default(),
            failed: Mutex::default(),
        };
        let mut hashes = HashMap::new();
        for (index, p) in file.principals.into_iter().enumerate() {
            let name = p.name;
            tenure_core::validate::owner(&name).map_err(|e| format!("{name:?}: {e}"))?;
            if book.by_name.insert(name.clone(), index).is_some() {
                return Err(format!("principal {name:?} appears twice"));
            }
            if let Some(hash) = &p.token_hash {
                PasswordHash::new(hash).map_err(|e| format!("{name}: token_hash: {e}"))?;
                if let Some(other) = hashes.insert(hash.clone(), name.clone()) {
                    return Err(format!(
                        "{name} and {other} have the same token_hash: one token would name both; \
                         give each its own (`tenure auth new-token`)"
                    ));
                }
            }
            match (&p.token_id, &p.token_hash) {
                (Some(id), Some(_)) => {
                    if !valid_id(id) {
                        return Err(format!(
                            "{name}: token_id {id:?} must be 1 to 64 letters and digits"
                        ));
                    }
                    if book.by_id.insert(id.clone(), index).is_some() {
                        return Err(format!("token_id {id:?} appears twice"));
                    }
                }
                (Some(_), None) => {
                    return Err(format!("{name}: token_id without token_hash"));
                }
                (None, Some(_)) => book.legacy.push(index),
                (None, None) => {}
            }
            let roles = Roles::parse(p.roles.as_deref()).map_err(|e| format!("{name}: {e}"))?;
            let all = p.tenants.iter().any(|t| t == "*");
            book.principals.push(Principal {
                name,
                hash: p.token_hash,
                roles,
                tenants: (!all).then(|| p.tenants.into_iter().collect()),
            });
        }
        Ok(book)
    }

    /// Entries without a token id cost one Argon2 each for every token
    /// without an id part: say so.
    fn warn_legacy(&self, path: &Path) {
        if !self.legacy.is_empty() {
            let names: Vec<&str> = self
                .legacy
                .iter()
                .map(|i| self.principals[*i].name.as_str())
                .collect();
            tracing::warn!(
                path = %path.display(),
                principals = ?names,
                "auth file entries without token_id: a token without an id is checked against each of them; \
                 replace them with `tenure auth new-token` entries"
            );
        }
    }

    fn identity(&self, index: usize) -> Identity {
        let p = &self.principals[index];
        Identity {
            name: p.name.clone(),
            roles: p.roles,
            tenants: p.tenants.clone(),
        }
    }

    fn named(&self, name: &str) -> Option<Identity> {
        self.by_name.get(name).map(|i| self.identity(*i))
    }

    fn verifies(&self, index: usize, token: &str) -> bool {
        self.principals[index]
            .hash
            .as_deref()
            .and_then(|h| PasswordHash::new(h).ok())
            .is_some_and(|h| {
                Argon2::default()
                    .verify_password(token.as_bytes(), &h)
                    .is_ok()
            })
    }

    fn recently_failed(&self, key: &[u8; 32]) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        match failed.get(key) {
            Some(at) if at.elapsed() < FAILED_FOR => true,
            Some(_) => {
                failed.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember_failure(&self, key: [u8; 32]) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.len() >= FAILED_MAX {
            failed.retain(|_, at| at.elapsed() < FAILED_FOR);
            if failed.len() >= FAILED_MAX {
                failed.clear();
            }
        }
        failed.insert(key, Instant::now());
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The id part of a token `tnr_<id>_<secret>`.
pub fn token_id(token: &str) -> Option<&str> {
    let (id, secret) = token.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    (valid_id(id) && !secret.is_empty()).then_some(id)
}

type AddressLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// Verifications the whole node makes per second, and at once, whoever
/// asks: Argon2 never takes more than a fraction of a core.
pub const NODE_VERIFICATIONS_PER_SECOND: u32 = 20;

/// Addresses the per-address limit keeps before it forgets the quiet ones.
const ADDRESSES_KEPT: usize = 10_000;

/// Runs `f`, which blocks for a while, where it does not hold up the
/// runtime's other tasks (on a multi-threaded runtime).
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The key of an address for the per-address limit: an IPv4 address (also
/// one mapped into IPv6) as it is, an IPv6 address by its /64, the block
/// one host is usually given.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(s))
            }
        },
    }
}

struct Inner {
    /// The auth file, reread on [`Auth::reload`]; `None`: development.
    path: Option<PathBuf>,
    book: RwLock<Option<Arc<Book>>>,
    /// Members and certificates, once the node has a raft.
    peers: Option<Peers>,
    /// Verifications per remote address.
    verifications: Arc<AddressLimiter>,
    /// Verifications of the whole node.
    node_verifications: governor::DefaultDirectRateLimiter,
    /// Held while an Argon2 verification runs: one at a time.
    argon2: Mutex<()>,
    /// How many times the auth file was reloaded.
    generation: std::sync::atomic::AtomicU64,
}

/// How this node identifies callers.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl Auth {
    fn with(path: Option<PathBuf>, book: Option<Book>, peers: Option<Peers>) -> Auth {
        let quota = governor::Quota::per_second(
            std::num::NonZeroU32::new(VERIFICATIONS_PER_SECOND)
                .unwrap_or(std::num::NonZeroU32::MIN),
        )
        .allow_burst(
            std::num::NonZeroU32::new(VERIFICATIONS_BURST).unwrap_or(std::num::NonZeroU32::MIN),
        );
        Auth {
            inner: Arc::new(Inner {
                path,
                book: RwLock::new(book.map(Arc::new)),
                peers,
                verifications: Arc::new(AddressLimiter::keyed(quota)),
                node_verifications: governor::RateLimiter::direct(governor::Quota::per_second(
                    std::num::NonZeroU32::new(NODE_VERIFICATIONS_PER_SECOND)
                        .unwrap_or(std::num::NonZeroU32::MIN),
                )),
                argon2: Mutex::new(()),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// No auth file: identity from `x-owner-id`, every role.
    pub fn development() -> Auth {
        Auth::with(None, None, None)
    }

    /// Reads an auth file; refuses one with a malformed hash, an unknown
    /// role, a duplicate or no principal.
    pub fn from_file(path: &Path) -> Result<Auth, ServerError> {
        let book = Book::load(path)?;
        book.warn_legacy(path);
        Ok(Auth::with(Some(path.to_owned()), Some(book), None))
    }

    /// The auth of a node: its file (if any), and its peers, who prove
    /// client certificates and vouch for the clients they forward.
    pub fn for_node(path: Option<&Path>, peers: Peers) -> Result<Auth, ServerError> {
        let book = path.map(Book::load).transpose()?;
        if let (Some(b), Some(p)) = (&book, path) {
            b.warn_legacy(p);
        }
        Ok(Auth::with(path.map(Path::to_owned), book, Some(peers)))
    }

    /// Whether this node checks credentials.
    pub fn enforced(&self) -> bool {
        self.book().is_some()
    }

    /// How many times the auth file was reloaded: a stream checks its
    /// caller again when this changes.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn book(&self) -> Option<Arc<Book>> {
        self.inner
            .book
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rereads the auth file: on success its principals replace the old
    /// ones (remembered tokens are forgotten); a broken file changes
    /// nothing, and the error says why.
    pub fn reload(&self) -> Result<usize, ServerError> {
        let Some(path) = &self.inner.path else {
            return Err(ServerError::Config(
                "no auth file to reload (development mode)".into(),
            ));
        };
        match Book::load(path) {
            Ok(book) => {
                book.warn_legacy(path);
                let n = book.principals.len();
                *self
                    .inner
                    .book
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(book));
                self.inner
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(path = %path.display(), principals = n, "auth file reloaded");
                Ok(n)
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "auth file not reloaded; the previous one stays in force");
                Err(e)
            }
        }
    }

    /// The principal a verified client certificate on this call names.
    fn certified<T>(&self, request: &Request<T>) -> Option<String> {
        let tls = self.inner.peers.as_ref()?.tls()?;
        tls.principal_of(&client_chain(request.extensions())?)
    }

    fn forwarded_by_member<T>(&self, request: &Request<T>) -> bool {
        self.inner
            .peers
            .as_ref()
            .is_some_and(|p| p.from_member(request.extensions()))
    }

    /// Before a follower forwards `request` to the leader: drops what the
    /// caller claimed in the headers only nodes may set, then vouches for
    /// the principal of its client certificate and its address.
    pub fn vouch<T>(&self, request: &mut Request<T>) {
        let certified = self.certified(request);
        let address = request.remote_addr().map(|a| a.ip().to_string());
        let metadata = request.metadata_mut();
        metadata.remove(ON_BEHALF_OF);
        metadata.remove(FORWARDED_FOR);
        if let Some(v) = certified.and_then(|n| MetadataValue::try_from(n).ok()) {
            metadata.insert(ON_BEHALF_OF, v);
        }
        if let Some(v) = address.and_then(|a| MetadataValue::try_from(a).ok()) {
            metadata.insert(FORWARDED_FOR, v);
        }
    }

    /// The address a call counts against: the one a member node forwarded
    /// it for, or the connection's.
    fn address<T>(&self, request: &Request<T>) -> IpAddr {
        let forwarded = || {
            request
                .metadata()
                .get(FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        self.forwarded_by_member(request)
            .then(forwarded)
            .flatten()
            .or_else(|| request.remote_addr().map(|a| a.ip()))
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), address_key)
    }

    /// The caller of `request`: OWNER_TOKEN_REQUIRED without a valid
    /// identity, RATE_LIMITED when its address caused too many
    /// verifications.
    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServeError> {
        let required = |m: &str| ServeError::refused(Reason::OwnerTokenRequired, m);
        let metadata = request.metadata();
        let Some(book) = self.book() else {
            let name = development_name(request)?
                .ok_or_else(|| required("no caller identity (x-owner-id)"))?;
            return Ok(Identity::development(name, claims_admin(request)));
        };
        // A call a member node forwarded: its certificate is the node's,
        // so the caller is the principal it vouches for, or the token's.
        let member = self.forwarded_by_member(request);
        if member && let Some(name) = metadata.get(ON_BEHALF_OF).and_then(|v| v.to_str().ok()) {
            return book
                .named(name)
                .ok_or_else(|| required("the certificate names no principal of the auth file"));
        }
        // The caller's own client certificate, when it names a principal.
        let certified = if member {
            None
        } else {
            self.certified(request)
        };
        if let Some(who) = certified.as_deref().and_then(|n| book.named(n)) {
            return Ok(who);
        }
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| match &certified {
                Some(name) => required(&format!(
                    "the client certificate names {name:?}, no principal of the auth file"
                )),
                None => required("no bearer token and no client certificate"),
            })?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = book
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if let Some(index) = known {
            return Ok(book.identity(index));
        }
        if book.recently_failed(&key) {
            return Err(required("unknown bearer token"));
        }
        // Which entry could it be? Finding out costs nothing; checking it
        // costs one Argon2 (or, for a token without an id, one per entry
        // made before ids existed).
        let candidates: &[usize] = match token_id(token) {
            Some(id) => book
                .by_id
                .get(id)
                .map(std::slice::from_ref)
                .unwrap_or_default(),
            None => &book.legacy,
        };
        if candidates.is_empty() {
            return Err(required("unknown bearer token"));
        }
        // From here a call costs work: limit it by address first (one
        // cell per verification it would make), then node-wide.
        let address = self.address(request);
        let limiter = &self.inner.verifications;
        if limiter.len() > ADDRESSES_KEPT {
            limiter.retain_recent();
        }
        let cells = u32::try_from(candidates.len())
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .unwrap_or(std::num::NonZeroU32::MIN);
        if !matches!(limiter.check_key_n(&address, cells), Ok(Ok(())))
            || self.inner.node_verifications.check_n(cells) != Ok(Ok(()))
        {
            return Err(ServeError::refused(
                Reason::RateLimited,
                format!("too many unverified credentials from {address}; retry later"),
            ));
        }
        // Argon2 takes tens of milliseconds of CPU: one at a time, and off
        // the runtime's workers, so that heartbeats and elections go on.
        let found = off_the_runtime(|| {
            let _one = self
                .inner
                .argon2
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            candidates
                .iter()
                .copied()
                .find(|i| book.verifies(*i, token))
        });
        match found {
            Some(index) => {
                book.verified
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, index);
                Ok(book.identity(index))
            }
            None => {
                book.remember_failure(key);
                tracing::info!(%address, "refused an unknown bearer token");
                Err(required("unknown bearer token"))
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

/// A new token and its id: `tnr_<16 hex id>_<64 hex secret>`, from the
/// operating system's randomness.
pub fn new_token() -> (String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    (format!("{TOKEN_PREFIX}{id}_{}", hex::encode(secret)), id)
}

/// Checks an auth file's text as a node would load it.
pub fn check_file(text: &str) -> Result<usize, String> {
    Book::parse(text).map(|b| b.principals.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "$argon2id$v=19$m=19456,t=2,p=1$N+nVEjEtDHMGQ6v8eOHexg$hGLFZQk8JIb5etoWcLRqUWjPgCz9zWOebsqmi+SmzzE";
    const HASH_B: &str = "$argon2id$v=19$m=19456,t=2,p=1$pGF9XSyMLxRZ9MPDtqoEYQ$oi+ekiAVguCcx+MpaKuIPiDlNUFD+38vOvCxD5SZeYY";

    fn entry(name: &str, id: Option<&str>, hash: Option<&str>, roles: &str) -> String {
        let mut e = format!("[[principal]]\nname = \"{name}\"\n");
        if let Some(id) = id {
            e.push_str(&format!("token_id = \"{id}\"\n"));
        }
        if let Some(h) = hash {
            e.push_str(&format!("token_hash = \"{h}\"\n"));
        }
        e.push_str(&format!("roles = [{roles}]\ntenants = [\"*\"]\n\n"));
        e
    }

    #[test]
    fn tn_auth_007_duplicates_unknown_roles_and_half_entries_refuse_the_file() {
        let ok = format!(
            "{}{}{}",
            entry("a", Some("id1"), Some(HASH_A), "\"writer\""),
            entry("b", None, Some(HASH_B), "\"reader\", \"admin\""),
            entry("cert-only", None, None, "\"writer\"")
        );
        assert_eq!(check_file(&ok), Ok(3));
        let refused = [
            // The same name twice.
            format!(
                "{}{}",
                entry("a", Some("id1"), Some(HASH_A), ""),
                entry("a", Some("id2"), Some(HASH_B), "")
            ),
            // The same token id twice.
            format!(
                "{}{}",
                entry("a", Some("id1"), Some(HASH_A), ""),
                entry("b", Some("id1"), Some(HASH_B), "")
            ),
            // The same hash twice (deploy/auth.example.toml used to do this).
            format!(
                "{}{}",
                entry("a", None, Some(HASH_A), ""),
                entry("b", None, Some(HASH_A), "")
            ),
            // An unknown role.
            entry("a", Some("id1"), Some(HASH_A), "\"root\""),
            // An id with no hash to check it against.
            entry("a", Some("id1"), None, ""),
            // A malformed hash.
            entry("a", None, Some("not-a-hash"), ""),
            // An id that is not letters and digits.
            entry("a", Some("id 1"), Some(HASH_A), ""),
            // Nobody.
            String::new(),
        ];
        for text in refused {
            assert!(check_file(&text).is_err(), "accepted:\n{text}");
        }
        // Roles default to writer only.
        let book = Book::parse(&entry("w", None, Some(HASH_A), "")).expect("parses");
        let roles = Book::parse("[[principal]]\nname = \"w\"\n")
            .expect("parses")
            .identity(0)
            .roles;
        assert_eq!(
            roles,
            Roles {
                writer: true,
                ..Roles::default()
            }
        );
        assert_eq!(
            book.identity(0).roles,
            Roles::default(),
            "roles = [] is none"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn tn_sec_002_an_arbitrary_auth_file_loads_or_is_refused(text in ".{0,400}") {
            let _ = check_file(&text);
        }

        #[test]
        fn tn_sec_002_an_arbitrary_principal_entry_loads_or_is_refused(
            name in ".{0,20}",
            id in proptest::option::of(".{0,20}"),
            roles in proptest::collection::vec("[a-z]{0,8}", 0..4),
        ) {
            let mut text = format!("[[principal]]\nname = {name:?}\n");
            if let Some(id) = id {
                text.push_str(&format!("token_id = {id:?}\ntoken_hash = {HASH_A:?}\n"));
            }
            text.push_str(&format!("roles = {roles:?}\n"));
            if let Ok(n) = check_file(&text) {
                proptest::prop_assert_eq!(n, 1);
            }
        }

        #[test]
        fn tn_sec_002_an_arbitrary_token_has_an_id_or_none(token in ".{0,100}") {
            if let Some(id) = token_id(&token) {
                proptest::prop_assert!(valid_id(id));
            }
        }
    }

    #[test]
    fn a_token_id_is_the_part_between_the_prefix_and_the_secret() {
        let (token, id) = new_token();
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_eq!(token_id("tnr__x"), None);
        assert_eq!(token_id("tnr_abc_"), None);
        assert_eq!(token_id("change-me"), None);
    }
}
