//! The supply-chain record (TN-SUP-001): the committed CycloneDX SBOM of
//! the binary names exactly the crates Cargo.lock resolves, at their
//! versions, and the cargo-deny policy checks licenses, bans and sources.
//! CI's `supply-chain` step regenerates the SBOM and runs cargo-deny
//! (scripts/supply-chain); this test catches a dependency change committed
//! without it.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Every (name, version) Cargo.lock resolves.
fn locked() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut out = BTreeSet::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take()
        {
            out.insert((n, v.trim_matches('"').to_owned()));
        }
    }
    out
}

#[test]
fn tn_sup_001_the_sbom_names_what_cargo_lock_resolves_and_deny_checks_the_rest() {
    let sbom: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("artifacts/sbom/tenure.cdx.json"))
            .expect("artifacts/sbom/tenure.cdx.json (scripts/supply-chain writes it)"),
    )
    .expect("JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let locked = locked();
    let components = sbom["components"].as_array().expect("components");
    let mut names = BTreeSet::new();
    for c in components {
        let name = c["name"].as_str().expect("a name").to_owned();
        let version = c["version"].as_str().expect("a version").to_owned();
        assert!(
            locked.contains(&(name.clone(), version.clone())),
            "{name} {version} is in the SBOM but not in Cargo.lock: rerun scripts/supply-chain"
        );
        names.insert(name);
    }
    // What the binary really runs on is in it: TLS, gRPC, raft, storage.
    for needed in [
        "rustls",
        "ring",
        "tonic",
        "openraft",
        "sled",
        "argon2",
        "x509-parser",
    ] {
        assert!(
            names.contains(needed),
            "{needed} is missing from the SBOM: rerun scripts/supply-chain"
        );
    }
    let deny = std::fs::read_to_string(root().join("deny.toml")).expect("deny.toml");
    for section in ["[licenses]", "[bans]", "[sources]"] {
        assert!(deny.contains(section), "deny.toml checks {section}");
    }
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("scripts/supply-chain"),
        "CI runs the supply-chain step"
    );
}
