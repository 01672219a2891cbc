"""Reads the strace logs and grant windows that scripts/durability-check
wrote, and checks that every grant's window holds an fdatasync of the raft
log's journal (a "*.jnl" file under "raft-log/") on the leader and on at
least one follower.
Usage: durability_check.py LABEL DIR LEADER_ID; exit 0 pass, 1 fail."""
import re
import sys
from pathlib import Path

DONE = re.compile(r"^(\d+)\s+(\d+\.\d+) (?:fdatasync|fsync)\(\d+<([^>]*)>\)\s*=\s*0")
START = re.compile(r"^(\d+)\s+\d+\.\d+ (?:fdatasync|fsync)\(\d+<([^>]*)> <unfinished \.\.\.>")
RESUMED = re.compile(r"^(\d+)\s+(\d+\.\d+) <\.\.\. (?:fdatasync|fsync) resumed>\)\s*=\s*0")


def is_journal(path: str) -> bool:
    return "/raft-log/" in path and path.endswith(".jnl")


def syncs(path: Path) -> list[float]:
    """Completion times of successful fdatasync/fsync calls on the raft
    log's journal (a call another thread interrupted in strace's output completes on
    its "resumed" line)."""
    out = []
    pending = {}
    for line in path.read_text(errors="replace").splitlines():
        if m := DONE.match(line):
            if is_journal(m.group(3)):
                out.append(float(m.group(2)))
        elif m := START.match(line):
            pending[m.group(1)] = m.group(2)
        elif m := RESUMED.match(line):
            if is_journal(pending.pop(m.group(1), "")):
                out.append(float(m.group(2)))
    return out


def main() -> int:
    label, d, leader = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    by_node = {i: syncs(d / f"node-{i}.strace") for i in (1, 2, 3)}
    grants = [line.split("\t") for line in (d / "grants.tsv").read_text().splitlines()]
    bad = []
    for k, t0, t1 in grants:
        t0, t1 = float(t0), float(t1)
        on_leader = any(t0 < t < t1 for t in by_node[leader])
        followers = sum(
            1 for i, ts in by_node.items() if i != leader and any(t0 < t < t1 for t in ts)
        )
        if not (on_leader and followers >= 1):
            bad.append(f"grant {k}: leader synced {on_leader}, followers synced {followers}")
    total = {i: len(ts) for i, ts in by_node.items()}
    print(f"{label}: {len(grants)} grants, leader {leader}, fdatasyncs of the log per node {total}")
    for b in bad[:5]:
        print(f"  {b}")
    if bad:
        print(f"{label}: {len(bad)} of {len(grants)} grants were acknowledged without a quorum fdatasync")
        return 1
    print(f"{label}: every grant was acknowledged after an fdatasync on the leader and a follower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
