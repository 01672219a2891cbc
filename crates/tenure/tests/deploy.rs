//! The deployment files are tested (TN-OPS-005): every manifest parses;
//! each `tenure serve` flag and `TENURE_*` variable it passes exists in
//! `tenure serve --help`; its probes point at paths a node serves (asked of
//! a running node); the alert rules pass `promtool check rules`; and every
//! metric the alerts and the dashboard use is one a node exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every string in a YAML document: keys and values, all the way down.
fn strings(value: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml_ng::Value::String(s) => out.push(s.clone()),
        serde_yaml_ng::Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        serde_yaml_ng::Value::Mapping(map) => {
            for (k, v) in map {
                strings(k, out);
                strings(v, out);
            }
        }
        serde_yaml_ng::Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// The YAML documents of a file (several, separated by `---`).
fn documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(&read(path))
        .map(|d| {
            serde_yaml_ng::Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .collect()
}

/// Words of `text` that look like `--flag` or `TENURE_VARIABLE`.
fn flags_and_variables(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut flags = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        if let Some(f) = word.strip_prefix("--")
            && f.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        {
            flags.insert(format!("--{f}"));
        } else if word.starts_with("TENURE_") && word.len() > "TENURE_".len() {
            vars.insert(word.to_owned());
        }
    }
    (flags, vars)
}

/// The `tenure_*` metric names an expression uses (histogram series names
/// back to their metric).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tenure_") && w.len() > "tenure_".len())
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tn_ops_005_every_manifest_names_real_flags_variables_probes_and_metrics() {
    let (code, help, err) = common::run(&["serve", "--help"]);
    assert_eq!(code, 0, "{err}");
    let (known_flags, known_vars) = flags_and_variables(&help);

    let mut manifests: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("an entry").path())
        .collect();
    manifests.push(deploy().join("compose.yaml"));
    manifests.push(deploy().join("prometheus/scrape.yaml"));
    manifests.push(deploy().join("prometheus/alerts.yaml"));
    let mut probes = BTreeSet::new();
    for path in &manifests {
        let mut all = Vec::new();
        for doc in documents(path) {
            strings(&doc, &mut all);
            // Probes: every httpGet path.
            let text = serde_yaml_ng::to_string(&doc).expect("serializes");
            for line in text.lines() {
                if let Some(p) = line.trim().strip_prefix("path: ") {
                    probes.insert(p.trim().to_owned());
                }
            }
        }
        let (flags, vars) = flags_and_variables(&all.join("\n"));
        for f in flags {
            assert!(
                known_flags.contains(&f),
                "{}: {f} is no `tenure serve` flag",
                path.display()
            );
        }
        for v in vars {
            assert!(
                known_vars.contains(&v),
                "{}: {v} is no `tenure serve` variable",
                path.display()
            );
        }
    }
    // The Dockerfile: its variables, and the path its health check asks.
    let dockerfile = read(&deploy().join("Dockerfile"));
    let (_, vars) = flags_and_variables(&dockerfile);
    for v in vars {
        assert!(
            known_vars.contains(&v),
            "Dockerfile: {v} is no `tenure serve` variable"
        );
    }
    assert!(
        dockerfile.contains("/readyz"),
        "the image's health check asks /readyz"
    );
    probes.insert("/readyz".into());
    assert!(
        probes.contains("/healthz") && probes.contains("/readyz"),
        "{probes:?}"
    );

    // Every probe path is one a running node serves.
    let (addrs, members) = common::free_members(1);
    let http = common::free_members(1).0[&1].clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args([
            "serve",
            "--id",
            "1",
            "--initial-cluster",
            &members,
            "--http-listen",
            &http,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tenure serve starts");
    let _ = &addrs;
    let start = tokio::time::Instant::now();
    let mut served = true;
    for path in &probes {
        let code = loop {
            match common::http_get(&http, path, None).await {
                Ok((code, _)) => break code,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the HTTP port never answered: {e}"),
            }
        };
        served &= code != 404;
        assert_ne!(code, 404, "{path} is not served");
    }
    let _ = node.kill();
    let _ = node.wait();
    assert!(served);

    // The alert rules pass Prometheus's checker.
    let out = Command::new(common::promtool())
        .args(["check", "rules"])
        .arg(deploy().join("prometheus/alerts.yaml"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the alerts and the dashboard use exists.
    let exported: BTreeSet<String> = tenure_server::metrics::NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let dashboard = read(&deploy().join("grafana/tenure.json"));
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut used = metric_names(&dashboard);
    used.extend(metric_names(&read(
        &deploy().join("prometheus/alerts.yaml"),
    )));
    assert!(!used.is_empty());
    for name in used {
        assert!(
            exported.contains(&name),
            "{name} is used but no node exports it"
        );
    }
}
