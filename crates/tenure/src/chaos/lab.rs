//! The lab a chaos run builds and tears down: a bridge in this namespace,
//! one network namespace per node joined to it by a veth pair, the packet
//! filters and link shaping inside those namespaces, and the small tmpfs
//! disks that a full-disk fault fills.
//!
//! Every name carries this process's id (`tnc<pid>…`), so two runs on one
//! machine do not meet, and a run that was killed outright is swept by the
//! next one: its namespaces and bridge go, and the processes left in them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;

/// The prefix of every name a run makes.
const PREFIX: &str = "tnc";

/// Runs `program` with `args`; its stdout, or an error naming the command
/// and what it printed on stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(program).args(args).output().map_err(|e| {
        Error::Cluster(format!(
            "chaos: running {program}: {e} (scripts/chaos installs what a run needs)"
        ))
    })?;
    if !output.status.success() {
        return Err(Error::Cluster(format!(
            "chaos: `{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`sh`], for clean-up: a failure is logged, not returned.
fn quietly(program: &str, args: &[&str]) {
    if let Err(e) = sh(program, args) {
        tracing::debug!(error = %e, "chaos clean-up step had nothing to do");
    }
}

/// Whether this process runs as root (namespaces, filters and mounts need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// The network and disks of one run.
pub struct Lab {
    tag: String,
    subnet: u8,
    nodes: u64,
    filters: bool,
    bridge: String,
    forward_rule: bool,
    namespaces: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Lab {
    /// Builds the bridge and one namespace per node, each reachable from
    /// here at [`Lab::ip`]; `filters`: whether partitions will be made.
    pub fn create(nodes: u64, filters: bool) -> Result<Lab, Error> {
        if !is_root() {
            return Err(Error::Cluster(
                "chaos: network namespaces, packet filters and mounts need root".into(),
            ));
        }
        sweep_stale();
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}");
        let mut lab = Lab {
            subnet: u8::try_from(pid % 250).unwrap_or(0) + 1,
            bridge: format!("{tag}br"),
            tag,
            nodes,
            filters,
            forward_rule: false,
            namespaces: Vec::new(),
            mounts: Vec::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), Error> {
        let bridge = self.bridge.clone();
        let gateway = format!("10.213.{}.254/24", self.subnet);
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        sh("ip", &["addr", "add", &gateway, "dev", &bridge])?;
        sh("ip", &["link", "set", &bridge, "up"])?;
        // A host whose FORWARD policy drops (Docker sets one) and that
        // passes bridged frames through iptables would drop node-to-node
        // traffic: let the bridge's own traffic through while the run lasts.
        self.forward_rule = sh(
            "iptables",
            &[
                "-w", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        )
        .is_ok();
        for i in 1..=self.nodes {
            let ns = self.ns(i);
            let veth = format!("{}v{i}", self.tag);
            sh("ip", &["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            sh(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            sh("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.ip(i));
            self.exec(i, "ip", &["addr", "add", &addr, "dev", "eth0"])?;
            self.exec(i, "ip", &["link", "set", "eth0", "up"])?;
            self.exec(i, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: u64) -> String {
        format!("10.213.{}.{i}", self.subnet)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: u64) -> String {
        format!("{}n{i}", self.tag)
    }

    /// Runs a command inside node `i`'s namespace.
    pub fn exec(&self, i: u64, program: &str, args: &[&str]) -> Result<String, Error> {
        let ns = self.ns(i);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Drops every packet from node `from` that reaches node `to`: one
    /// direction of a cut (both calls make a two-way cut).
    pub fn drop_from(&self, from: u64, to: u64) -> Result<(), Error> {
        let src = self.ip(from);
        self.exec(
            to,
            "iptables",
            &["-w", "-A", "INPUT", "-s", &src, "-j", "DROP"],
        )
        .map(drop)
    }

    /// Shapes what node `i` sends with `tc netem` (`delay 100ms 50ms`, …).
    pub fn netem(&self, i: u64, spec: &[&str]) -> Result<(), Error> {
        let mut all = vec!["netem"];
        all.extend_from_slice(spec);
        self.shape(i, &all)
    }

    /// Puts queueing discipline `qdisc` (`tbf rate 256kbit …`) on what
    /// node `i` sends.
    pub fn shape(&self, i: u64, qdisc: &[&str]) -> Result<(), Error> {
        let mut args = vec!["qdisc", "replace", "dev", "eth0", "root"];
        args.extend_from_slice(qdisc);
        self.exec(i, "tc", &args).map(drop)
    }

    /// Drops a share `p` (0–1) of the packets reaching node `i`, at random.
    pub fn lose(&self, i: u64, p: f64) -> Result<(), Error> {
        let p = format!("{p:.3}");
        self.exec(
            i,
            "iptables",
            &[
                "-w",
                "-A",
                "INPUT",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
        .map(drop)
    }

    /// Lifts every cut and every link shape; answers what could not be
    /// lifted.
    pub fn heal_network(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for i in 1..=self.nodes {
            if self.filters
                && let Err(e) = self.exec(i, "iptables", &["-w", "-F", "INPUT"])
            {
                tracing::warn!(node = i, error = %e, "chaos: flushing the node's filter");
                failed.push(format!("node {i}: its packet filter: {e}"));
            }
            if let Err(e) = self.exec(i, "tc", &["qdisc", "del", "dev", "eth0", "root"]) {
                tracing::debug!(node = i, error = %e, "chaos: no link shape to lift");
            }
        }
        failed
    }

    /// Mounts a tmpfs of `mib` MiB at `dir`, unmounted at tear-down.
    pub fn mount_tmpfs(&mut self, dir: &Path, mib: u64) -> Result<(), Error> {
        std::fs::create_dir_all(dir)?;
        let size = format!("size={mib}m");
        let path = dir.to_string_lossy().into_owned();
        sh("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &path])?;
        self.mounts.push(dir.to_owned());
        Ok(())
    }

    /// Removes everything the run made. Idempotent.
    pub fn teardown(&mut self) {
        for (i, ns) in (1..).zip(std::mem::take(&mut self.namespaces)) {
            kill_in(&ns);
            // The host's end of the pair, at once: a deleted namespace
            // takes its end (and with it this one) only when the kernel
            // gets round to it.
            quietly("ip", &["link", "del", &format!("{}v{i}", self.tag)]);
            quietly("ip", &["netns", "del", &ns]);
        }
        quietly("ip", &["link", "del", &self.bridge]);
        if std::mem::take(&mut self.forward_rule) {
            quietly(
                "iptables",
                &[
                    "-w",
                    "-D",
                    "FORWARD",
                    "-i",
                    &self.bridge,
                    "-o",
                    &self.bridge,
                    "-j",
                    "ACCEPT",
                ],
            );
        }
        for dir in self.mounts.drain(..) {
            quietly("umount", &["-l", &dir.to_string_lossy()]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Kills every process left in namespace `ns`.
fn kill_in(ns: &str) {
    if let Ok(pids) = sh("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            quietly("kill", &["-CONT", pid]);
            quietly("kill", &["-KILL", pid]);
        }
    }
}

/// Removes what runs whose process is gone left behind: their namespaces
/// (and processes in them), bridges, and tmpfs mounts under a chaos data
/// directory.
fn sweep_stale() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    if let Ok(list) = sh("ip", &["netns", "list"]) {
        for ns in list.split_whitespace().filter(|w| w.starts_with(PREFIX)) {
            let pid = ns[PREFIX.len()..].split('n').next().unwrap_or("");
            if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid) {
                tracing::info!(
                    namespace = ns,
                    "chaos: sweeping a namespace a killed run left"
                );
                kill_in(ns);
                quietly("ip", &["netns", "del", ns]);
                quietly("ip", &["link", "del", &format!("{PREFIX}{pid}br")]);
            }
        }
    }
}

/// Unmounts tmpfs mounts under `dir` (a previous run's disks, if it was
/// killed before its tear-down).
pub fn unmount_under(dir: &Path) {
    let Ok(root) = dir.canonicalize() else {
        return;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(point)) = (fields.next(), fields.next()) else {
            continue;
        };
        if kind == "tmpfs" && Path::new(point).starts_with(&root) && Path::new(point) != root {
            quietly("umount", &["-l", point]);
        }
    }
}
