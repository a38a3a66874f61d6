"""Generated states are scored at precision = recall = 1 against their own truth.json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.demo.generate import generate
from core.engine import Engine
from core.rules.base import SCORED_KINDS
from core.timefmt import parse_as_of

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def score(out: Path, truth: dict) -> tuple[float, float, dict]:
    snap = Engine(out / ".orchestrator", as_of=parse_as_of(truth["as_of"])).scan()
    got = {(f.task_id, f.kind) for f in snap.findings if f.kind in SCORED_KINDS}
    want = {(tid, k) for tid, kinds in truth["tasks"].items() for k in kinds}
    tp = len(got & want)
    precision = tp / len(got) if got else 1.0
    recall = tp / len(want) if want else 1.0
    return precision, recall, {"missed": sorted(want - got)[:10], "extra": sorted(got - want)[:10]}


@pytest.mark.parametrize(("n", "seed"), [(2000, 1), (600, 7), (30, 3)])
def test_generated_state_scores_perfectly(tmp_path: Path, n: int, seed: int) -> None:
    truth = generate(tmp_path / "q", n, seed=seed)
    assert len(truth["tasks"]) == n
    precision, recall, diff = score(tmp_path / "q", truth)
    assert (precision, recall) == (1.0, 1.0), diff


def test_every_scored_kind_is_present_at_500(tmp_path: Path) -> None:
    truth = generate(tmp_path / "q", 500, seed=2)
    present = Counter(k for kinds in truth["tasks"].values() for k in kinds)
    assert set(present) == SCORED_KINDS


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 300, seed=5)
    b = generate(tmp_path / "b", 300, seed=5)
    c = generate(tmp_path / "c", 300, seed=6)
    assert a == b and a != c
    fa = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*"))
    fb = sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*"))
    assert fa == fb


def test_cli_generate(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    proc = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--generate", "120",
                           "--out", str(out), "--seed", "4"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["tasks"]) == 120 and (out / ".orchestrator" / "state.db").is_file()
    again = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--generate", "5",
                            "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert again.returncode == 2 and "not empty" in again.stderr
