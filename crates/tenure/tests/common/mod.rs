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
