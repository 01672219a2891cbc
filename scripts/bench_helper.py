#!/usr/bin/env python3
"""The small parts of scripts/bench that are easier in Python.

  bench_helper.py fsync-rate DIR SECS          the disk's fsync rate in DIR (4 KiB write + fsync)
  bench_helper.py flushes tenure|etcd ENDPOINTS BIN
                                               the leader's flush count (Tenure: disk_flushes of
                                               Admin.Status; etcd: WAL fsyncs from /metrics)
  bench_helper.py kill-leader tenure|etcd DIR ENDPOINTS BIN
                                               kill -9 the leader's process (pid files in DIR)
  bench_helper.py report RESULTS.jsonl OUT.md OUT.json
                                               the Tenure-vs-etcd tables from the runs
  bench_helper.py scrape HOST:PORT,...         every node's histogram sums and counts (JSON)
  bench_helper.py breakdown BEFORE AFTER REPORT CLIENTS
                                               one run's stage means (a JSON line)
  bench_helper.py breakdown-report RESULTS.jsonl SECS ROUNDS OUT.md OUT.json
                                               the latency breakdown table
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request


def fsync_rate(directory, secs):
    path = os.path.join(directory, "fsync-probe")
    block = b"x" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n, start = 0, time.monotonic()
        while time.monotonic() - start < secs:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def tenure_status(endpoints, binary):
    out = subprocess.run(
        [binary, "cluster", "status", "--json", "--endpoints", endpoints],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    return json.loads(out)


def etcd_status(endpoints):
    out = subprocess.run(
        ["etcdctl", "--endpoints", endpoints, "endpoint", "status", "-w", "json"],
        capture_output=True, text=True, timeout=20, check=True,
        env=dict(os.environ, ETCDCTL_API="3"),
    ).stdout
    return json.loads(out)


def etcd_leader_endpoint(endpoints):
    for s in etcd_status(endpoints):
        st = s["Status"]
        if st["leader"] == st["header"]["member_id"]:
            return s["Endpoint"]
    raise SystemExit("etcd has no leader")


def flushes(system, endpoints, binary):
    if system == "tenure":
        status = tenure_status(endpoints, binary)
        for node in status["nodes"]:
            if node.get("node_id") == status["leader_id"] and "disk_flushes" in node:
                return node["disk_flushes"]
        raise SystemExit("no leader in the Tenure status")
    leader = etcd_leader_endpoint(endpoints)
    url = leader if leader.startswith("http") else "http://" + leader
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("etcd_disk_wal_fsync_duration_seconds_count"):
            return int(float(line.split()[-1]))
    raise SystemExit("etcd reported no WAL fsync count")


def kill_leader(system, directory, endpoints, binary):
    if system == "tenure":
        # The node that says it leads, not what some node believes.
        nodes = tenure_status(endpoints, binary)["nodes"]
        leaders = [n["node_id"] for n in nodes if n.get("role") == "leader"]
        if len(leaders) != 1:
            raise SystemExit(f"no single Tenure leader: {leaders}")
        pidfile = os.path.join(directory, f"node-{leaders[0]}.pid")
    else:
        port = etcd_leader_endpoint(endpoints).rsplit(":", 1)[1]
        member = {"2379": 1, "22379": 2, "32379": 3}[port]
        pidfile = os.path.join(directory, f"member-{member}.pid")
    with open(pidfile) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGKILL)
    print(f"killed the {system} leader (pid {pid}, {pidfile})", file=sys.stderr)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"


def report(results_path, md_path, json_path):
    with open(results_path) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    meta = next((r for r in runs if r.get("kind") == "meta"), {})
    benches = [r for r in runs if r.get("kind") == "run"]
    groups = {}
    for r in benches:
        key = (r["workload"], r["clients"], r["leases"] if r["workload"] == "keep-alive" else 0)
        groups.setdefault(key, {}).setdefault(r["system"], []).append(r)

    def summary(rs):
        errors = {}
        for r in rs:
            for reason, n in r["errors"].items():
                errors[reason] = errors.get(reason, 0) + n
        cores = [max((c["cores"] for c in r["cpu"]), default=None) for r in rs]
        per_fsync = [r.get("ops_per_fsync") for r in rs]
        return {
            "rounds": len(rs),
            "throughput": median([r["throughput"] for r in rs]),
            "p50_ms": median([r["p50_ms"] for r in rs]),
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "p999_ms": median([r["p999_ms"] for r in rs]),
            "errors": errors,
            "leader_cores": median(cores),
            "ops_per_fsync": median(per_fsync),
        }

    table = []
    for (workload, clients, leases), by_system in sorted(groups.items()):
        row = {"workload": workload, "clients": clients, "leases": leases}
        for system in ("tenure", "etcd"):
            if system in by_system:
                row[system] = summary(by_system[system])
        t, e = row.get("tenure"), row.get("etcd")
        if t and e and e["throughput"]:
            row["throughput_ratio"] = t["throughput"] / e["throughput"]
        if t and e and t["p99_ms"]:
            row["p99_ratio"] = e["p99_ms"] / t["p99_ms"]
        table.append(row)

    failovers = [r for r in runs if r.get("kind") == "failover"]
    failover = {}
    for system in ("tenure", "etcd"):
        fs = [r["fault"] for r in failovers if r["system"] == system and r.get("fault")]
        if fs:
            failover[system] = {
                "rounds": len(fs),
                "window_ms": median([f["window_ms"] for f in fs]),
                "window_ms_each": [f["window_ms"] for f in fs],
                "recovery_ms": median([f["recovery_ms"] for f in fs]),
                "recovery_ms_each": [f["recovery_ms"] for f in fs],
                "before_per_s": median([f["before_per_s"] for f in fs]),
            }
    big = [r for r in runs if r.get("kind") == "keep-alive-100k"]

    lines = [f"# Tenure vs etcd ({meta.get('date', '?')})", ""]
    lines.append(
        f"One machine ({meta.get('cpus', '?')} cores), one run of `scripts/bench`: a 3-node Tenure "
        f"cluster and a 3-node etcd {meta.get('etcd_version', '')} cluster on loopback, both with "
        "fsync on and elections after 300–600 ms, data on the same disk. The load generator "
        "(`tenure bench`, `tenure-bench-etcd`: the same runner) runs on the same machine. Each cell is the "
        f"median of {meta.get('rounds', '?')} rounds of {meta.get('secs', '?')} s after a 1 s warm-up; "
        "the systems alternate run by run (A B A B) so machine noise hits both. "
        f"The disk's own rate: {fmt(meta.get('fsync_per_s'))} fsync/s (4 KiB write + fsync)."
    )
    lines.append("")
    lines.append(
        "Workloads: **lock-cycle** acquire (TTL 10 s) + release — etcd: `Lock(name, lease)` + `Unlock` "
        "with one session lease per client; **fenced** the same with a write to a downstream store that "
        "refuses stale tokens (etcd's token: the lock response's revision); **keep-alive** "
        f"{meta.get('keepalive_leases', '?')} leases (TTL 120 s, so none lapses while they are taken) split across the clients, each renewed every second "
        "(Tenure: one KeepAlive stream per client; etcd: `LeaseKeepAlive` per lease), ops = renewals; "
        "**contended** every client on 4 keys with acquires that wait their turn (etcd's `Lock` "
        "blocks); **get** a linearizable read of one lock. Clients use disjoint keys except in "
        "*contended*. A failed op is counted under its reason after the client's own retries (10 s)."
    )
    lines.append("")
    lines.append(
        "| workload | clients | Tenure ops/s | etcd ops/s | ratio | Tenure p50 | etcd p50 | Tenure p99 | "
        "etcd p99 | p99 etcd÷Tenure | Tenure errors | etcd errors | leader cores T / e |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    for row in table:
        t, e = row.get("tenure", {}), row.get("etcd", {})

        def errs(s):
            return ", ".join(f"{k} {v}" for k, v in sorted(s.get("errors", {}).items())) or "-"

        lines.append(
            f"| {row['workload']} | {row['clients']} | {fmt(t.get('throughput'))} | {fmt(e.get('throughput'))} | "
            f"{fmt(row.get('throughput_ratio'), 2)} | {fmt(t.get('p50_ms'), 2)} | {fmt(e.get('p50_ms'), 2)} | "
            f"{fmt(t.get('p99_ms'), 2)} | {fmt(e.get('p99_ms'), 2)} | {fmt(row.get('p99_ratio'), 2)} | "
            f"{errs(t)} | {errs(e)} | {fmt(t.get('leader_cores'), 2)} / {fmt(e.get('leader_cores'), 2)} |"
        )
    lines.append("")
    lines.append("Latencies in ms. *ratio*: Tenure ÷ etcd throughput; *p99 etcd÷Tenure* above 1 means Tenure's p99 is lower.")
    lines.append("")

    lines.append("## Operations per fsync (64 clients)")
    lines.append("")
    lines.append("Successful operations of the whole run (warm-up included) per fsync of the leader "
                 "(Tenure: `disk_flushes` in Admin.Status; etcd: `etcd_disk_wal_fsync_duration_seconds_count`).")
    lines.append("")
    lines.append("| workload | Tenure ops per fsync | etcd ops per fsync |")
    lines.append("| --- | ---: | ---: |")
    for row in table:
        if row["clients"] == 64 and row["workload"] in ("lock-cycle", "fenced", "contended"):
            lines.append(f"| {row['workload']} | {fmt(row.get('tenure', {}).get('ops_per_fsync'), 2)} | "
                         f"{fmt(row.get('etcd', {}).get('ops_per_fsync'), 2)} |")
    lines.append("")

    lines.append("## Failover: `kill -9` of the leader under a 64-client lock-cycle load")
    lines.append("")
    lines.append("*window*: the longest stretch without a successful cycle, starting near the kill; "
                 "*recovery*: from the kill to the first full second at ≥ 90 % of the throughput before it.")
    lines.append("")
    lines.append("| system | rounds | before (ops/s) | window ms (median; each) | recovery ms (median; each) |")
    lines.append("| --- | ---: | ---: | --- | --- |")
    for system, f in failover.items():
        lines.append(f"| {system} | {f['rounds']} | {fmt(f['before_per_s'])} | {fmt(f['window_ms'])}; "
                     f"{', '.join(fmt(w) for w in f['window_ms_each'])} | {fmt(f['recovery_ms'])}; "
                     f"{', '.join(fmt(w) for w in f['recovery_ms_each'])} |")
    lines.append("")

    if big:
        lines.append("## Keep-alive of many leases")
        lines.append("")
        lines.append("16 clients, each lease renewed every 3.3 s (what a 10 s TTL asks; the TTL is 120 s so that none "
                     "lapses while 100,000 are taken), 30 s measured "
                     "after the leases are taken; *leader cores*: CPU seconds per second of the busiest node.")
        lines.append("")
        lines.append("| system | leases | clients | renewals/s | leader cores | leader RSS MiB | errors |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in big:
            cpu = max(r["cpu"], key=lambda c: c["cores"], default={"cores": None, "rss_mib": None})
            errs = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "-"
            lines.append(f"| {r['system']} | {r['leases']} | {r['clients']} | {fmt(r['throughput'])} | "
                         f"{fmt(cpu['cores'], 3)} | {fmt(cpu['rss_mib'])} | {errs} |")
        lines.append("")

    def cell(workload, clients):
        return next((r for r in table if r["workload"] == workload and r["clients"] == clients), None)

    def met(ok):
        return "met" if ok else "**not met**"

    lines.append("## Against the goals (issue 15)")
    lines.append("")
    for clients, goal in ((1, 1.0), (64, 2.0), (256, 2.5)):
        row = cell("lock-cycle", clients)
        if row and row.get("throughput_ratio") is not None:
            ratio = row["throughput_ratio"]
            lines.append(f"- Lock cycles at {clients} client{'s' if clients != 1 else ''}: Tenure ÷ etcd = "
                         f"**{ratio:.2f}** (goal ≥ {goal}): {met(ratio >= goal)}.")
    worse = [f"{r['workload']} at {r['clients']} ({fmt(r['tenure']['p99_ms'], 1)} vs {fmt(r['etcd']['p99_ms'], 1)} ms)"
             for r in table if r.get("p99_ratio") is not None and r["p99_ratio"] < 1.0]
    lines.append("- p99 no worse than etcd's at every concurrency: "
                 + (met(True) + "." if not worse else met(False) + ": Tenure's p99 is higher in " + "; ".join(worse) + "."))
    row = cell("contended", 64)
    if row and row.get("p99_ratio") is not None:
        lines.append(f"- Contended waits at 64 waiters, p99: Tenure {fmt(row['tenure']['p99_ms'], 1)} ms vs etcd "
                     f"{fmt(row['etcd']['p99_ms'], 1)} ms: {met(row['p99_ratio'] >= 1.0)}.")
    if "tenure" in failover and "etcd" in failover:
        t, e = failover["tenure"]["window_ms"], failover["etcd"]["window_ms"]
        lines.append(f"- Failover window (median): Tenure **{fmt(t)} ms** vs etcd {fmt(e)} ms (goal: no longer than "
                     f"etcd's): {met(t is not None and e is not None and t <= e)}.")
    tenure_big = next((r for r in big if r["system"] == "tenure"), None)
    if tenure_big:
        cpu = max(tenure_big["cpu"], key=lambda c: c["cores"], default=None)
        if cpu:
            lines.append(f"- Keep-alive of {tenure_big['leases']} leases: the leader used **{fmt(cpu['cores'], 3)} "
                         f"cores** (goal ≤ 1): {met(cpu['cores'] <= 1)}; its RSS **{fmt(cpu['rss_mib'])} MiB** at the "
                         f"end of the measured window (goal ≤ 256): {met(cpu['rss_mib'] <= 256)}.")
    lines.append("")
    lines.append("Rerun: `scripts/bench` (about 35 minutes; `BENCH_SECS`, `BENCH_ROUNDS`, `BENCH_CLIENTS`, "
                 "`BENCH_WORKLOADS` scale it).")

    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "table": table, "failover": failover, "keep_alive_many": big}, f, indent=1)
        f.write("\n")


def scrape(addresses):
    """Every node's `_sum`/`_count` series and its raft role, by address."""
    nodes = {}
    for address in addresses.split(","):
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        series, role = {}, None
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if name == 'tenure_raft_role{role="leader"}' and float(value) == 1:
                role = "leader"
            if name.split("{")[0].endswith(("_sum", "_count")):
                series[name] = float(value)
        nodes[address] = {"role": role or "follower", "series": series}
    return nodes


# The stages a write passes through, each a histogram: (key, metric, labels
# that must appear, where it is read).
STAGES = [
    ("server", "tenure_rpc_duration_seconds", ['method="Lock/Acquire"', 'result="OK"'], "leader"),
    ("server_release", "tenure_rpc_duration_seconds", ['method="Lock/Release"', 'result="OK"'], "leader"),
    ("queue", "tenure_raft_queue_seconds", [], "leader"),
    ("write", "tenure_raft_write_seconds", [], "leader"),
    ("leader_flush", "tenure_log_flush_duration_seconds", [], "leader"),
    ("replicate", "tenure_raft_replicate_seconds", [], "leader"),
    ("follower_append", "tenure_raft_follower_append_seconds", [], "followers"),
    ("follower_flush", "tenure_log_flush_duration_seconds", [], "followers"),
    ("apply", "tenure_raft_apply_seconds", [], "leader"),
]


def stage_delta(before, after, metric, labels, where):
    total, count = 0.0, 0.0
    for address, node in after.items():
        is_leader = node["role"] == "leader"
        if (where == "leader") != is_leader:
            continue
        old = before.get(address, {}).get("series", {})
        for name, value in node["series"].items():
            base = name.split("{")[0]
            if base not in (metric + "_sum", metric + "_count"):
                continue
            if not all(l in name for l in labels):
                continue
            delta = value - old.get(name, 0.0)
            if base.endswith("_sum"):
                total += delta
            else:
                count += delta
    return total, count


def breakdown(before_path, after_path, report_json, clients):
    before = json.load(open(before_path))
    after = json.load(open(after_path))
    r = json.loads(report_json)
    clients = int(clients)
    sums = {k: stage_delta(before, after, m, l, w) for k, m, l, w in STAGES}
    ms = {k: (1000 * t / n if n else 0.0) for k, (t, n) in sums.items()}
    # Both calls of a cycle are writes: the server's mean over both.
    (ta, na), (tr, nr) = sums["server"], sums["server_release"]
    ms["server"] = 1000 * (ta + tr) / (na + nr) if na + nr else 0.0
    del ms["server_release"]
    # A closed loop: each client has one call open at any time.
    calls = 2 * r["throughput"]
    ms["client"] = 1000 * clients / calls if calls else 0.0
    counts = {k: n for k, (t, n) in sums.items()}
    return json.dumps({"clients": clients, "throughput": r["throughput"], "p50_ms": r["p50_ms"],
                       "p99_ms": r["p99_ms"], "stages": ms, "counts": counts})


def breakdown_report(results_path, secs, rounds, md_path, json_path):
    import datetime
    rows = [json.loads(l) for l in open(results_path)]
    by_clients = {}
    for row in rows:
        by_clients.setdefault(row["clients"], []).append(row)
    summary = {}
    for c, runs in sorted(by_clients.items()):
        stages = {k: median([r["stages"][k] for r in runs]) for k in runs[0]["stages"]}
        summary[c] = {"runs": len(runs), "throughput": median([r["throughput"] for r in runs]),
                      "p50_ms": median([r["p50_ms"] for r in runs]), "stages": stages,
                      "entries": median([r["counts"]["write"] for r in runs]),
                      "calls": median([r["counts"]["server"] + r["counts"]["server_release"] for r in runs])}
    lines = [f"# Where a write's time goes ({datetime.date.today()})", "",
             f"`scripts/bench-breakdown`: a 3-node Tenure cluster of the release build on loopback on this "
             f"2-core machine, fdatasync on; the lock-cycle workload (acquire with a 10 s TTL, release: two "
             f"writes) from `tenure bench`, {rounds} runs of {secs} s per row, each on a fresh cluster. Every "
             "node's stage histograms (/metrics) are read before and after each run; a stage is the mean of "
             "its histogram over the run (sum ÷ count), in ms, and each row the median over the runs.", "",
             "Stages, in the order a write passes them:", "",
             "- **client round trip**: what one call costs the client (clients ÷ calls per second: a closed loop).",
             "- **server**: the leader's gRPC handler (`tenure_rpc_duration_seconds`, Acquire and Release).",
             "- **queue**: the command's wait in the proposer for an entry (`tenure_raft_queue_seconds`).",
             "- **write**: one entry from `client_write` to its answer (`tenure_raft_write_seconds`): the "
             "leader's append and flush, then replication, commit and apply.",
             "- **leader flush**: sled's flush and the fdatasync on the leader (`tenure_log_flush_duration_seconds`).",
             "- **replicate**: the leader's AppendEntries round trip to a follower (`tenure_raft_replicate_seconds`), "
             "of which **follower append** is the follower's handling (`tenure_raft_follower_append_seconds`) "
             "and **follower flush** its flush.",
             "- **apply**: the lease table's apply and the audit events' store (`tenure_raft_apply_seconds`).",
             "- The rest is derived: *client and network* = client round trip − server; *handler* = server − "
             "queue − write; *replication transport* = replicate − follower append; *openraft* = write − "
             "leader flush − replicate − apply (the core's task hops, commit, the answer's way back).", ""]
    head = "| stage |" + "".join(f" {c} client{'s' if c != 1 else ''} ms | share |" for c in summary) 
    lines.append(head)
    lines.append("| --- |" + " ---: | ---: |" * len(summary))
    def derived(s):
        return {
            "client and network": s["client"] - s["server"],
            "handler": s["server"] - s["queue"] - s["write"],
            "queue": s["queue"],
            "leader flush": s["leader_flush"],
            "replication transport": s["replicate"] - s["follower_append"],
            "follower append (without its flush)": s["follower_append"] - s["follower_flush"],
            "follower flush": s["follower_flush"],
            "apply": s["apply"],
            "openraft": s["write"] - s["leader_flush"] - s["replicate"] - s["apply"],
        }
    parts = {c: derived(v["stages"]) for c, v in summary.items()}
    for name in next(iter(parts.values())):
        cells = ""
        for c, v in summary.items():
            total = v["stages"]["client"]
            x = parts[c][name]
            cells += f" {x:.3f} | {100 * x / total:.0f} % |" if total else " - | - |"
        lines.append(f"| {name} |{cells}")
    cells = "".join(f" **{v['stages']['client']:.3f}** | 100 % |" for v in summary.values())
    lines.append(f"| **client round trip** |{cells}")
    lines += ["", "| clients | cycles/s | cycle p50 ms | calls per entry | server ms | write ms | replicate ms |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c, v in summary.items():
        s = v["stages"]
        per_entry = v["calls"] / v["entries"] if v["entries"] else 0
        lines.append(f"| {c} | {v['throughput']:.0f} | {v['p50_ms']:.2f} | {per_entry:.1f} | "
                     f"{s['server']:.3f} | {s['write']:.3f} | {s['replicate']:.3f} |")
    lines += ["", "Shares are of the client round trip. Under concurrency the stages overlap (many calls "
              "share one entry and one flush), so only the 1-client column adds up to a single call's time.",
              "docs/performance.md reads this table."]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(json_path, "w") as f:
        json.dump({"secs": secs, "rounds": rounds, "summary": summary, "parts": parts, "runs": rows},
                  f, indent=1)
        f.write("\n")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "fsync-rate":
        print(f"{fsync_rate(args[0], float(args[1])):.0f}")
    elif cmd == "flushes":
        print(flushes(args[0], args[1], args[2]))
    elif cmd == "kill-leader":
        kill_leader(args[0], args[1], args[2], args[3])
    elif cmd == "report":
        report(args[0], args[1], args[2])
    elif cmd == "scrape":
        print(json.dumps(scrape(args[0])))
    elif cmd == "breakdown":
        print(breakdown(args[0], args[1], args[2], args[3]))
    elif cmd == "breakdown-report":
        breakdown_report(args[0], args[1], args[2], args[3], args[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
