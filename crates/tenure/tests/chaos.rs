//! `tenure chaos` on the real binary: a short run under faults that need
//! no more than iproute2 (kill -9, SIGSTOP, slow links), checked
//! clean, with every fault reported and everything it made gone after; and
//! a run stopped by Ctrl-C that cleans up too. They need root, as the
//! command does (CI runs as root).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tenure")
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    assert!(
        root,
        "tenure chaos needs root (network namespaces); run the suite as root, as CI does"
    );
}

/// Namespaces and links named for process `pid` that are still there.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("tnc{pid}");
    let mut left = Vec::new();
    for args in [&["netns", "list"][..], &["-o", "link", "show"][..]] {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&tag))
                .map(str::to_owned),
        );
    }
    left
}

/// `tenure chaos ARGS --out OUT`, its output captured.
fn chaos(args: &[&str], out: &Path) -> std::process::Child {
    Command::new(bin())
        .arg("chaos")
        .args(args)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenure chaos starts")
}

#[test]
fn tn_sim_008_a_chaos_run_on_real_processes_is_checked_clean_and_cleans_up() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("run");
    let child = chaos(
        &[
            "--minutes",
            "0.4",
            "--seed",
            "3",
            "--faults",
            "kill,pause,slow",
            "--clients",
            "4",
            "--ttl-ms",
            "1500",
        ],
        &out_dir,
    );
    let pid = child.id();
    let out = child.wait_with_output().expect("tenure chaos runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nreport:\n{report}"
    );
    assert!(stdout.contains("violations: clean"), "{stdout}");
    // The report names each fault with its nodes, start and end.
    assert!(report.starts_with("# Chaos run: clean"), "{report}");
    let rows: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("## Faults injected"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #") && !l.starts_with("| -"))
        .collect();
    assert!(!rows.is_empty(), "no faults reported:\n{report}");
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (start, end): (f64, f64) = (
            cells[5].parse().expect("start"),
            cells[6].parse().expect("end"),
        );
        assert!(end > start, "{row}");
        assert!(["kill", "pause", "slow"].contains(&cells[2]), "{row}");
    }
    // The history is there and checks clean with `tenure check history`.
    let history = out_dir.join("history.ndjson");
    let check = Command::new(bin())
        .args(["check", "history"])
        .arg(&history)
        .output()
        .expect("check runs");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
    assert!(no_node_left(&out_dir), "a node process outlived the run");
}

#[test]
fn tn_sim_008_a_chaos_run_stopped_by_ctrl_c_removes_what_it_made() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("run");
    let child = chaos(&["--minutes", "5", "--faults", "pause,kill"], &out_dir);
    let pid = child.id();
    // Wait until the cluster is up and the clients run.
    let started = Instant::now();
    while !out_dir.join("faults.log").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert!(!leftovers(pid).is_empty(), "the run made no namespaces");
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let out = child.wait_with_output().expect("tenure chaos stops");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
    assert!(no_node_left(&out_dir), "a node process outlived the run");
}

/// No process runs with a data directory under `dir`.
fn no_node_left(dir: &Path) -> bool {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    !procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
    })
}

/// A tmpfs of `mib` MiB at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mounting a tmpfs");
        SmallDisk { dir }
    }

    /// Writes until the disk refuses.
    fn fill(&self) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.dir.path().join("filler")).expect("filler");
        let chunk = vec![0_u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..512]).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn tn_dur_002_a_node_whose_disk_fills_exits_rather_than_run_on_without_raft() {
    require_root();
    let disk = SmallDisk::new(32);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let mut node = Command::new(bin())
        .args([
            "serve",
            "--id",
            "1",
            "--initial-cluster",
            &format!("1={addr}"),
        ])
        .arg("--data-dir")
        .arg(disk.dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenure serve starts");
    let lock = |key: &str| {
        Command::new(bin())
            .args(["lock", "--endpoints", &addr, "acquire", key, "--owner", "o"])
            .output()
            .expect("tenure lock runs")
    };
    let started = Instant::now();
    while !lock("before").status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node never granted a lock"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    disk.fill();
    // Every grant appends to the log; the append fails on the full disk.
    let filled = Instant::now();
    let status = loop {
        if let Some(status) = node.try_wait().expect("the node's status") {
            break status;
        }
        if filled.elapsed() > Duration::from_secs(20) {
            let _ = node.kill();
            let _ = node.wait();
            panic!("the node still runs 20 s after its disk filled and its log writes failed");
        }
        let _ = lock(&format!("after-{}", filled.elapsed().as_millis()));
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = node.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        !status.success(),
        "the node exited 0 after a storage failure"
    );
    assert!(stderr.contains("raft stopped"), "{stderr}");
}
