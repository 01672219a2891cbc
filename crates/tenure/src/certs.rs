//! `tenure certs init`: a development certificate authority, a certificate
//! for each node and one for a client, so a TLS cluster runs on one
//! machine in two commands. Production deployments bring their own PKI;
//! docs/security.md says what the certificates must name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::Error;

/// `tenure certs`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a development CA (ca.pem), node certificates (node-N.pem,
    /// SANs 127.0.0.1, localhost and node-N) and a client certificate
    /// (client.pem), each with its key (…-key.pem).
    Init(InitArgs),
}

/// `tenure certs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to write into (made if missing).
    #[arg(long)]
    out: PathBuf,
    /// How many node certificates: node-1 … node-N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    nodes: u64,
    /// The client certificate's name (its CN): the principal it is with
    /// `--client-ca`.
    #[arg(long, default_value = "client")]
    client: String,
    /// More names for every node certificate (a host name or an IP
    /// address the nodes are reached at); repeat or comma-separate.
    #[arg(long, value_delimiter = ',')]
    san: Vec<String>,
    /// How long the certificates are valid, days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

fn rcgen(e: rcgen::Error) -> Error {
    Error::Cluster(format!("certificate: {e}"))
}

/// Runs a certs command; prints the files it wrote.
pub fn run(command: CertsCommand, out: &mut impl std::io::Write) -> Result<(), Error> {
    let CertsCommand::Init(args) = command;
    tenure_core::validate::owner(&args.client)
        .map_err(|e| Error::Cluster(format!("--client: {e}")))?;
    if args.client.starts_with("node-") {
        return Err(Error::Cluster(
            "--client: a name node-… is a node's, not a client's".into(),
        ));
    }
    std::fs::create_dir_all(&args.out)?;
    let mut names: Vec<String> = vec!["ca".into()];
    names.extend((1..=args.nodes).map(|i| format!("node-{i}")));
    names.push("client".into());
    if !args.force {
        for n in &names {
            for file in [format!("{n}.pem"), format!("{n}-key.pem")] {
                let path = args.out.join(&file);
                if path.exists() {
                    return Err(Error::Cluster(format!(
                        "{} exists; pass --force to overwrite",
                        path.display()
                    )));
                }
            }
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(args.days));
    let validity = |p: &mut CertificateParams| {
        p.not_before = now - time::Duration::hours(1);
        p.not_after = until;
    };

    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Tenure development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca);
    let ca_key = KeyPair::generate().map_err(rcgen)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(rcgen)?;
    write(&args.out, "ca", &issuer.pem(), &ca_key_pem, out)?;

    let leaf = |cn: &str, dns: Vec<String>, ips: Vec<IpAddr>, server: bool| {
        let mut p = CertificateParams::new(dns).map_err(rcgen)?;
        p.subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        validity(&mut p);
        let key = KeyPair::generate().map_err(rcgen)?;
        let cert = p.signed_by(&key, &issuer).map_err(rcgen)?;
        Ok::<_, Error>((cert.pem(), key.serialize_pem()))
    };
    let (extra_ips, extra_dns): (Vec<String>, Vec<String>) = args
        .san
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .partition(|s| s.parse::<IpAddr>().is_ok());
    for i in 1..=args.nodes {
        let name = format!("node-{i}");
        let mut dns = vec![name.clone(), "localhost".to_owned()];
        dns.extend(extra_dns.iter().cloned());
        let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
        ips.extend(extra_ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()));
        let (cert, key) = leaf(&name, dns, ips, true)?;
        write(&args.out, &name, &cert, &key, out)?;
    }
    let (cert, key) = leaf(&args.client, Vec::new(), Vec::new(), false)?;
    write(&args.out, "client", &cert, &key, out)?;
    Ok(())
}

/// Writes NAME.pem and NAME-key.pem (the key readable by its owner only).
fn write(
    dir: &Path,
    name: &str,
    cert: &str,
    key: &str,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, cert)?;
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&key_path)?;
        // An existing file (--force) keeps its mode on open: set it.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::io::Write::write_all(&mut file, key.as_bytes())?;
    }
    writeln!(out, "{}\n{}", cert_path.display(), key_path.display())?;
    Ok(())
}
