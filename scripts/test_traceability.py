#!/usr/bin/env python3
"""Self-test for scripts/traceability: python3 scripts/test_traceability.py"""
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "traceability"

REQUIREMENTS = """\
# Requirements

- **LS-ACC-01** — ten concurrent acquires, one winner.
- **LS-ACC-010** — a made-up neighbour with a longer number | and a pipe.
- **TN-WAIT-002** — hand-over to the first waiter.
- **TN-DET-001** — same commands, same digest.
"""

UNIT_RS = """\
fn helper_ls_acc_010_not_a_test() {}

#[cfg(test)]
mod tests {
    /// Doc comment between the attribute and the fn.
    #[test]
    #[should_panic]
    fn ls_acc_01_ten_owners() {}

    #[tokio::test(flavor = "multi_thread")]
    async fn handover_tn_wait_002() {}

    #[test]
    fn ls_acc_0100_typo() {}
}
"""

PROP_RS = """\
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    fn tn_det_001_same_digest(seed in 0u64..10) {
        let s = "}";
        prop_assert!(seed < 10);
    }
}

fn tn_wait_002_outside_block_not_a_test() {}
"""


class TraceabilityTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.write("spec/requirements.md", REQUIREMENTS)
        self.write("crates/tenure-core/src/table.rs", UNIT_RS)
        self.write("tests/props.rs", PROP_RS)
        self.write("target/debug/ignored.rs", "#[test]\nfn ls_acc_010_in_target() {}\n")

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, rel, text):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def run_script(self, *args):
        return subprocess.run([sys.executable, str(SCRIPT), "--root", str(self.root), *args],
                              capture_output=True, text=True)

    def report(self):
        return (self.root / "artifacts" / "traceability.md").read_text(encoding="utf-8")

    def row(self, rid):
        return next(line for line in self.report().splitlines() if line.startswith(f"| {rid} |"))

    def test_coverage_and_boundary_rule(self):
        r = self.run_script()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("`tenure-core::table::ls_acc_01_ten_owners`", self.row("LS-ACC-01"))
        self.assertIn("`tenure-core::table::handover_tn_wait_002`", self.row("TN-WAIT-002"))
        self.assertNotIn("outside_block", self.row("TN-WAIT-002"))
        self.assertIn("`tests::props::tn_det_001_same_digest`", self.row("TN-DET-001"))
        # ls_acc_01 must not match inside ls_acc_010 / ls_acc_0100; helpers and target/ don't count.
        self.assertNotIn("0100", self.row("LS-ACC-01"))
        self.assertTrue(self.row("LS-ACC-010").endswith("| — |"))
        self.assertIn("\\|", self.row("LS-ACC-010"))
        self.assertIn("4 requirements, 3 covered", self.report())
        self.assertIn("uncovered: LS-ACC-010", r.stderr)
        self.assertIn("LS-ACC-0100", r.stderr)  # typo guard warning

    def test_all_covered_exit_0_scenario_and_stable(self):
        self.write("crates/tenure-core/tests/scenarios/handover",
                   "# requirements: LS-ACC-010, TN-WAIT-002\nacquire a\n")
        r = self.run_script()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("`crates/tenure-core/tests/scenarios/handover`", self.row("LS-ACC-010"))
        first = self.report()
        self.assertEqual(self.run_script().returncode, 0)
        self.assertEqual(first, self.report())
        self.assertIn("None: every requirement has a test.", first)
        # The typo guard is fatal only with --strict.
        self.assertEqual(self.run_script("--check", "--strict").returncode, 1)

    def test_check_does_not_write(self):
        self.assertEqual(self.run_script("--check").returncode, 1)
        self.assertFalse((self.root / "artifacts").exists())

    def test_missing_or_empty_requirements_exit_2(self):
        self.write("spec/requirements.md", "# Requirements\n\nnothing here\n")
        self.assertEqual(self.run_script("--check").returncode, 2)
        (self.root / "spec" / "requirements.md").unlink()
        self.assertEqual(self.run_script("--check").returncode, 2)


if __name__ == "__main__":
    unittest.main()
