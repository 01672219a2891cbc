//! The node processes of a chaos run: `tenure serve` of the binary under
//! test, one per namespace, with TLS and an auth file (the nodes listen
//! beyond loopback), each under libfaketime when clock faults are on.
//!
//! A node's clock is faked through a timestamp file of its own. Normally
//! only its wall clock is faked (`FAKETIME_DONT_FAKE_MONOTONIC=1`), so a
//! step of the file is an NTP-style step of the wall clock while the node
//! runs. A fast clock is a restart with the monotonic clock faked too, at a
//! rate within the drift the clients allow for: a process's monotonic
//! clock never jumps, so its rate is set when it starts.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::lab::{Lab, sh};
use crate::error::Error;

/// gRPC port of every node (each has an address of its own).
pub const PORT: u16 = 7001;

/// Where libfaketime is on Debian (and derivatives).
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

/// libfaketime's path, if it is installed.
pub fn faketime_lib() -> Option<PathBuf> {
    FAKETIME_LIBS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// What every node is started with.
pub struct NodeSpec {
    /// The binary under test.
    pub bin: PathBuf,
    /// The run's directory (certs/, auth.toml, node-N/).
    pub dir: PathBuf,
    /// `1=ip:port,…`.
    pub members: String,
    /// libfaketime, when clock faults are on.
    pub faketime: Option<PathBuf>,
    /// A negative control for builds made with `--features chaos-controls`.
    pub control: Option<String>,
    /// The smallest TTL the table allows, ms.
    pub ttl_min_ms: u64,
}

/// The nodes, running or not.
pub struct Nodes {
    spec: NodeSpec,
    children: Vec<Option<Child>>,
    /// Each node's monotonic clock rate (1.0: the true rate).
    pub rates: Vec<f64>,
    /// How many times each node was started.
    pub starts: Vec<u64>,
}

impl Nodes {
    /// No node running yet.
    pub fn new(spec: NodeSpec, n: u64) -> Nodes {
        let n = usize::try_from(n).unwrap_or(0);
        Nodes {
            spec,
            children: (0..n).map(|_| None).collect(),
            rates: vec![1.0; n],
            starts: vec![0; n],
        }
    }

    fn slot(i: u64) -> usize {
        usize::try_from(i.saturating_sub(1)).unwrap_or(0)
    }

    /// Node `i`'s directory (data/, node.log, clock).
    pub fn dir(&self, i: u64) -> PathBuf {
        self.spec.dir.join(format!("node-{i}"))
    }

    /// Node `i`'s disk: a small tmpfs when full-disk faults are on.
    pub fn disk(&self, i: u64) -> PathBuf {
        self.dir(i).join("disk")
    }

    /// Node `i`'s data directory, on its disk.
    pub fn data_dir(&self, i: u64) -> PathBuf {
        self.disk(i).join("data")
    }

    fn clock_file(&self, i: u64) -> PathBuf {
        self.dir(i).join("faketime")
    }

    /// Sets node `i`'s faked clock: `+0` (none), `+600` (wall clock ten
    /// minutes ahead), `+0 x1.03` (3 % fast, with a monotonic restart).
    pub fn set_clock(&self, i: u64, spec: &str) -> Result<(), Error> {
        write_atomically(&self.clock_file(i), spec)
    }

    /// Starts node `i` in its namespace (at its current clock rate).
    pub fn start(&mut self, lab: &Lab, i: u64) -> Result<(), Error> {
        let slot = Nodes::slot(i);
        if self.children.get(slot).is_some_and(Option::is_some) {
            return Ok(());
        }
        let dir = self.dir(i);
        std::fs::create_dir_all(self.data_dir(i))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))?;
        let certs = self.spec.dir.join("certs");
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let ns = lab.ns(i);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "env"]);
        let rate = self.rates.get(slot).copied().unwrap_or(1.0);
        if let Some(lib) = &self.spec.faketime {
            if !self.clock_file(i).exists() {
                self.set_clock(i, "+0")?;
            }
            cmd.arg(format!("LD_PRELOAD={}", lib.display()));
            cmd.arg(format!(
                "FAKETIME_TIMESTAMP_FILE={}",
                path(self.clock_file(i))
            ));
            cmd.arg("FAKETIME_CACHE_DURATION=1");
            if rate == 1.0 {
                cmd.arg("FAKETIME_DONT_FAKE_MONOTONIC=1");
            }
        }
        if let Some(control) = &self.spec.control {
            cmd.arg(format!("TENURE_CHAOS_CONTROL={control}"));
        }
        cmd.arg("NO_COLOR=1");
        cmd.arg(format!(
            "RUST_LOG={}",
            std::env::var("TENURE_CHAOS_LOG").unwrap_or_else(|_| "info".into())
        ));
        cmd.arg(&self.spec.bin);
        cmd.args(["serve", "--id", &i.to_string()]);
        cmd.args(["--initial-cluster", &self.spec.members]);
        cmd.args(["--listen", &format!("{}:{PORT}", lab.ip(i))]);
        cmd.args(["--data-dir", &path(self.data_dir(i))]);
        cmd.args(["--tls-cert", &path(certs.join(format!("node-{i}.pem")))]);
        cmd.args(["--tls-key", &path(certs.join(format!("node-{i}-key.pem")))]);
        cmd.args(["--tls-ca", &path(certs.join("ca.pem"))]);
        cmd.args(["--auth-file", &path(self.spec.dir.join("auth.toml"))]);
        cmd.args(["--ttl-min-ms", &self.spec.ttl_min_ms.to_string()]);
        // Callers here are few and busy: no rate limit in the way.
        cmd.args(["--rate-limit", "0"]);
        // A process group of its own: a Ctrl-C at the terminal reaches the
        // run, which stops the nodes itself, not every node at once.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Cluster(format!("chaos: starting node {i}: {e}")))?;
        tracing::info!(node = i, pid = child.id(), rate, "chaos: node started");
        if let Some(s) = self.children.get_mut(slot) {
            *s = Some(child);
        }
        if let Some(n) = self.starts.get_mut(slot) {
            *n += 1;
        }
        Ok(())
    }

    /// Node `i`'s process id, if it runs.
    pub fn pid(&self, i: u64) -> Option<u32> {
        self.children
            .get(Nodes::slot(i))
            .and_then(Option::as_ref)
            .map(Child::id)
    }

    /// Whether node `i`'s process is still there (it may have exited on
    /// its own: a full disk, say).
    pub fn running(&mut self, i: u64) -> bool {
        match self.children.get_mut(Nodes::slot(i)) {
            Some(Some(child)) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    tracing::warn!(node = i, %status, "chaos: node exited");
                    self.children[Nodes::slot(i)] = None;
                    false
                }
                Err(_) => true,
            },
            _ => false,
        }
    }

    /// `kill -9` node `i` (continued first, in case it was paused); an
    /// error when it was not running.
    pub fn kill(&mut self, i: u64) -> Result<(), Error> {
        let Some(Some(mut child)) = self.children.get_mut(Nodes::slot(i)).map(Option::take) else {
            return Err(Error::Cluster(format!("node {i} is not running")));
        };
        {
            let _ = signal(child.id(), "-CONT");
            if let Err(e) = child.kill() {
                tracing::debug!(node = i, error = %e, "chaos: node already gone");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(node = i, error = %e, "chaos: reaping node");
            }
        }
        Ok(())
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT to node `i`; an error when it is
    /// not running or the signal was not delivered.
    pub fn pause(&self, i: u64, pause: bool) -> Result<(), Error> {
        let pid = self
            .pid(i)
            .ok_or_else(|| Error::Cluster(format!("node {i} is not running")))?;
        signal(pid, if pause { "-STOP" } else { "-CONT" })
    }

    /// Kills every node that runs.
    pub fn kill_all(&mut self) {
        for i in 1..=self.children.len() as u64 {
            let _ = self.kill(i);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Sends `sig` to `pid` with the `kill` program (procps).
fn signal(pid: u32, sig: &str) -> Result<(), Error> {
    sh("kill", &[sig, &pid.to_string()]).map(drop)
}

/// Writes `text` to `path` through a rename, so a reader never sees half.
fn write_atomically(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
