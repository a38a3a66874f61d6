"""Conformance against the real Octopoid sample in ../shared (skipped in a bare clone)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qwarden.core.formats import open_engine
from qwarden.core.rules.base import SCORED_KINDS
from qwarden.core.timefmt import parse_as_of
from tests.conftest import SHARED_SAMPLE, restore_sample, snapshot_bytes

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason="../shared/fixtures absent"),
]


def test_sample_findings_match_truth_exactly(tmp_path: Path, utc_tz: None) -> None:
    truth = restore_sample(tmp_path / "s")
    snap = open_engine(tmp_path / "s" / ".orchestrator", as_of=parse_as_of(truth["as_of"])).scan()
    got: dict[str, set[str]] = {}
    for f in snap.findings:
        if f.kind in SCORED_KINDS:
            got.setdefault(f.task_id, set()).add(f.kind)
    want = {tid: set(kinds) for tid, kinds in truth["tasks"].items()}
    assert {t: k for t, k in got.items() if k} == {t: k for t, k in want.items() if k}
    # liveness details the scenarios describe
    v = snap.verdicts
    assert v["2e8757e5"].split_brain_live and v["2e8757e5"].liveness.value == "live"
    assert v["2e8757e5"].recommended_action.value == "continue_supervision"
    assert v["560fa4b0"].liveness.value == "dead"
    assert v["730e360d"].liveness.value == "at_risk"
    assert v["1613bfd2"].liveness.value == "live"
    assert v["d4b06435"].effective_state == "incoming"


def test_sample_report_cli_json_and_readonly(tmp_path: Path) -> None:
    truth = restore_sample(tmp_path / "s")
    before = snapshot_bytes(tmp_path / "s")
    proc = subprocess.run(
        [sys.executable, "-m", "qwarden.core.cli",
         "report", "--json", "--root", str(tmp_path / "s"),
         "--as-of", truth["as_of"]],
        capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema_version"] == 2
    kinds = {(f["task_id"], f["kind"]) for f in data["findings"]}
    assert ("560fa4b0", "zombie_claim") in kinds
    assert snapshot_bytes(tmp_path / "s") == before
