//! What the binary's tests share: running `tenure`, and free loopback
//! addresses for a cluster of real processes.
// Each test file uses some of these, none all.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;

/// Runs `tenure ARGS`: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(args)
        .output()
        .expect("the tenure binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` free loopback addresses for nodes 1..=n, and the
/// `--initial-cluster` value naming them.
pub fn free_members(n: u64) -> (BTreeMap<u64, String>, String) {
    let addrs: BTreeMap<u64, String> = (1..=n)
        .map(|id| {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            (id, l.local_addr().expect("address").to_string())
        })
        .collect();
    let members = addrs
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    (addrs, members)
}

/// `GET path` from the HTTP port at `addr` (over TLS when the nodes' CA is
/// given): (status, body). HTTP/1.1 on its own connection.
pub async fn http_get(
    addr: &str,
    path: &str,
    ca_pem: Option<&[u8]>,
) -> std::io::Result<(u16, String)> {
    match ca_pem {
        None => http_call(addr, "GET", path, &[], "").await,
        Some(pem) => https_call(addr, "GET", path, &[], "", pem, None).await,
    }
}

/// `METHOD path` with `headers` and a JSON body to the TLS HTTP port at
/// `addr`, trusting `ca_pem`, presenting `identity` (certificate chain and
/// key, PEM) when given: (status, body). HTTP/1.1 on its own connection.
pub async fn https_call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = rustls::pki_types::CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                .map_err(std::io::Error::other)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(std::io::Error::other)?
        }
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    s.write_all(request_text(addr, method, path, headers, body).as_bytes())
        .await?;
    let mut raw = Vec::new();
    // A server may close without a TLS close_notify: keep what came.
    let read = s.read_to_end(&mut raw).await;
    if raw.is_empty() {
        read?;
    }
    response(&raw)
}

/// `promtool`, from Debian's prometheus package, installed when missing
/// (CI runs as root with the package registry in reach).
pub fn promtool() -> std::path::PathBuf {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .expect("sh runs");
    if found.status.success() {
        return String::from_utf8_lossy(&found.stdout).trim().into();
    }
    let installed = std::process::Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus",
        ])
        .output()
        .expect("sh runs");
    assert!(
        installed.status.success(),
        "installing promtool failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    "promtool".into()
}

/// `METHOD path` with `headers` and a body to the plain HTTP port at
/// `addr`: (status, body). HTTP/1.1 on its own connection.
pub async fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request_text(addr, method, path, headers, body).as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    response(&raw)
}

/// An HTTP/1.1 request with a JSON body, on a connection closed after it.
fn request_text(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

/// The status and the body (chunks joined) of a raw HTTP/1.1 response.
fn response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {text:?}")))?;
    let mut body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    // A chunked body: keep the chunks' data.
    if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut data = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            data.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        body = data;
    }
    Ok((status, body))
}
