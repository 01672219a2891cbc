//! Transport security: the certificates a node serves and calls with, and
//! what a certificate a caller presents proves.
//!
//! A node with TLS serves every port over TLS only (rustls, through tonic)
//! and calls its peers with mutual TLS. Two trust roots:
//!
//! - `--tls-ca` signs node certificates. A caller of the Raft service must
//!   present one that names a node, `node-<id>`, in its CN or a DNS SAN
//!   (what `tenure certs init` issues), and the id must be a member.
//!   A client certificate from the same CA names no node, so it is refused,
//!   with no extra flag (etcd's `--peer-cert-allowed-cn`, on by default).
//! - `--client-ca` (optional) signs client certificates. A client that
//!   presents one is the principal the certificate names: its CN, or else
//!   its first DNS or URI SAN.
//!
//! The handshake accepts a certificate from either root, or none (a client
//! may authenticate with a bearer token); which root signed it is checked
//! again, by rustls's own verifier for that root alone, when it matters.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tenure_raft::NodeId;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::ServerError;

/// How long a TLS handshake may take before the connection is dropped (a
/// slow or idle client holds no connection longer).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The files a node's TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM): `node-<id>` as CN or DNS SAN,
    /// and the names clients reach it at.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs node certificates (PEM).
    pub ca: PathBuf,
    /// The CA that signs client certificates, if clients may authenticate
    /// by certificate (PEM).
    pub client_ca: Option<PathBuf>,
}

/// A node's loaded TLS: what it serves with, what it calls peers with, and
/// the verifiers that say what a presented certificate proves.
pub struct Tls {
    server: ServerTlsConfig,
    http: Arc<rustls::ServerConfig>,
    client: ClientTlsConfig,
    nodes: Arc<dyn ClientCertVerifier>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    /// What recent chains proved: a connection presents the same chain on
    /// every call (a peer's on every append), and verifying its signatures
    /// each time is work done twice on the hottest path.
    proved_nodes: Proved<Option<NodeId>>,
    proved_principals: Proved<Option<String>>,
}

/// How long a chain's verdict is remembered before it is verified again
/// (so an expiry or a membership-independent change shows within it).
pub const PROVED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Verdicts remembered at most; beyond, all are forgotten.
const PROVED_MAX: usize = 4096;

/// Verdicts on certificate chains, by SHA-256 of the chain, for
/// [`PROVED_FOR`].
struct Proved<T> {
    seen: std::sync::Mutex<std::collections::HashMap<[u8; 32], (tokio::time::Instant, T)>>,
}

impl<T: Clone> Proved<T> {
    fn new() -> Proved<T> {
        Proved {
            seen: std::sync::Mutex::default(),
        }
    }

    /// The verdict on `chain`, from memory or from `judge`.
    fn get(&self, chain: &[CertificateDer<'static>], judge: impl FnOnce() -> T) -> T {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for cert in chain {
            hash.update((cert.len() as u64).to_be_bytes());
            hash.update(cert.as_ref());
        }
        let key: [u8; 32] = hash.finalize().into();
        let now = tokio::time::Instant::now();
        let lock = || {
            self.seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((at, verdict)) = lock().get(&key)
            && now.duration_since(*at) < PROVED_FOR
        {
            return verdict.clone();
        }
        let verdict = judge();
        let mut seen = lock();
        if seen.len() >= PROVED_MAX {
            seen.clear();
        }
        seen.insert(key, (now, verdict.clone()));
        verdict
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_certificates", &self.clients.is_some())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::Config(format!("{what} {}: {e}", path.display())))
}

/// The certificates of a PEM file; refuses a file with none.
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Config(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// A verifier that accepts client certificates signed by `roots` only.
fn verifier(
    roots: Vec<CertificateDer<'static>>,
    path: &Path,
) -> Result<Arc<dyn ClientCertVerifier>, ServerError> {
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots);
    if added == 0 {
        return Err(ServerError::Config(format!(
            "{}: no usable CA certificate in it",
            path.display()
        )));
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}

impl Tls {
    /// Reads and checks the files: every certificate parses, the key is a
    /// key, each CA holds a usable certificate.
    pub fn load(files: &TlsFiles) -> Result<Tls, ServerError> {
        let cert = read(&files.cert, "--tls-cert")?;
        let key = read(&files.key, "--tls-key")?;
        let ca = read(&files.ca, "--tls-ca")?;
        certificates(&cert, &files.cert)?;
        PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| ServerError::Config(format!("{}: {e}", files.key.display())))?;
        let nodes = verifier(certificates(&ca, &files.ca)?, &files.ca)?;
        let mut accepted = ca.clone();
        let clients = match &files.client_ca {
            Some(path) => {
                let pem = read(path, "--client-ca")?;
                let v = verifier(certificates(&pem, path)?, path)?;
                accepted.push(b'\n');
                accepted.extend_from_slice(&pem);
                Some(v)
            }
            None => None,
        };
        let http = {
            let chain = certificates(&cert, &files.cert)?;
            let private = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| ServerError::Config(format!("{}: {e}", files.key.display())))?;
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Config(format!("TLS: {e}")))?;
            // With --client-ca, a client may prove itself by certificate
            // here too (optional: tokens work without one); which
            // principal it names is decided per call, as on gRPC.
            let config = match &files.client_ca {
                Some(path) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in certificates(&accepted, path)? {
                        roots
                            .add(c)
                            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::new(rustls::crypto::ring::default_provider()),
                    )
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
                    config.with_client_cert_verifier(verifier)
                }
                None => config.with_no_client_auth(),
            };
            let mut config = config
                .with_single_cert(chain, private)
                .map_err(|e| ServerError::Config(format!("{}: {e}", files.cert.display())))?;
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        };
        let identity = Identity::from_pem(&cert, &key);
        let server = ServerTlsConfig::new()
            .identity(identity.clone())
            .client_ca_root(Certificate::from_pem(accepted))
            .client_auth_optional(true)
            .timeout(HANDSHAKE_TIMEOUT);
        let client = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .identity(identity);
        Ok(Tls {
            server,
            http,
            client,
            nodes,
            clients,
            proved_nodes: Proved::new(),
            proved_principals: Proved::new(),
        })
    }

    /// What the node serves with.
    pub fn server_config(&self) -> ServerTlsConfig {
        self.server.clone()
    }

    /// What the node's HTTP port serves with: its certificate, and with
    /// `--client-ca` an optional client certificate (as on gRPC).
    pub fn http_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.http)
    }

    /// What the node calls its peers with: their CA, its own certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        self.client.clone()
    }

    /// Whether clients may authenticate by certificate (`--client-ca`).
    pub fn client_certificates(&self) -> bool {
        self.clients.is_some()
    }

    /// The node a certificate chain proves: signed by the node CA and
    /// naming `node-<id>` in its CN or a DNS SAN.
    pub fn node_of(&self, chain: &[CertificateDer<'static>]) -> Option<NodeId> {
        self.proved_nodes.get(chain, || {
            let (leaf, rest) = chain.split_first()?;
            self.nodes
                .verify_client_cert(leaf, rest, UnixTime::now())
                .ok()?;
            let names = Names::of(leaf)?;
            if !names.server_auth {
                return None;
            }
            names
                .common_name
                .iter()
                .chain(&names.dns)
                .find_map(|n| node_id(n))
        })
    }

    /// The principal a client certificate chain names: signed by the
    /// client CA; its CN, or else its first DNS or URI SAN.
    pub fn principal_of(&self, chain: &[CertificateDer<'static>]) -> Option<String> {
        let verifier = self.clients.as_ref()?;
        self.proved_principals.get(chain, || {
            let (leaf, rest) = chain.split_first()?;
            verifier
                .verify_client_cert(leaf, rest, UnixTime::now())
                .ok()?;
            let names = Names::of(leaf)?;
            names
                .common_name
                .or(names.first_san)
                .filter(|n| !n.is_empty())
        })
    }
}

/// The id in a node name `node-<id>`: digits only, no sign, no leading
/// zero, so one id has exactly one name.
pub fn node_id(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix("node-")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// The certificate chain a caller presented on this connection, if any.
pub fn peer_chain(extensions: &tonic::Extensions) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
}

/// The certificate chain a caller presented on the HTTP port's TLS
/// handshake, carried (in process) into the request the gateway makes of
/// it. Only a client's identity is read from it: a node certificate there
/// proves nothing about forwarding (that is gRPC's, [`peer_chain`]).
#[derive(Clone, Debug)]
pub struct HttpPeerChain(pub Arc<Vec<CertificateDer<'static>>>);

/// The chain a client presented: on the gRPC port, or on the HTTP port.
pub fn client_chain(extensions: &tonic::Extensions) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    peer_chain(extensions).or_else(|| extensions.get::<HttpPeerChain>().map(|c| Arc::clone(&c.0)))
}

/// The names in a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// The DNS SANs.
    pub dns: Vec<String>,
    /// The first DNS or URI SAN.
    pub first_san: Option<String>,
    /// Whether it may serve TLS: no extended key usage (any use), or one
    /// that lists serverAuth. A node certificate must; a client
    /// certificate (clientAuth only) cannot pass for a node.
    pub server_auth: bool,
}

impl Names {
    /// The names in `der`; `None` when it does not parse.
    pub fn of(der: &[u8]) -> Option<Names> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let server_auth = match cert.extended_key_usage() {
            Ok(Some(eku)) => eku.value.server_auth || eku.value.any,
            Ok(None) => true,
            Err(_) => false,
        };
        let mut names = Names {
            server_auth,
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..Names::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        names.dns.push((*d).to_owned());
                        names.first_san.get_or_insert_with(|| (*d).to_owned());
                    }
                    GeneralName::URI(u) => {
                        names.first_san.get_or_insert_with(|| (*u).to_owned());
                    }
                    _ => {}
                }
            }
        }
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn_tls_002_a_node_name_has_one_spelling() {
        assert_eq!(node_id("node-1"), Some(1));
        assert_eq!(node_id("node-0"), Some(0));
        assert_eq!(node_id("node-42"), Some(42));
        for other in [
            "node-", "node-01", "node-+1", "node--1", "node-1a", "Node-1", "node-1 ", "client",
        ] {
            assert_eq!(node_id(other), None, "{other}");
        }
    }
}
