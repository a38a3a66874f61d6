"""Generated states are scored at precision = recall = 1 against their own truth.json."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid.generate import generate
from qwarden.core.rules.base import SCORED_KINDS
from qwarden.core.timefmt import parse_as_of

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def score(out: Path, truth: dict) -> tuple[float, float, dict]:
    snap = open_engine(out / ".orchestrator", as_of=parse_as_of(truth["as_of"])).scan()
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
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "demo", "--generate", "120",
                           "--out", str(out), "--seed", "4"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["tasks"]) == 120 and (out / ".orchestrator" / "state.db").is_file()
    again = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "demo", "--generate", "5",
                            "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert again.returncode == 64 and "not empty" in again.stderr  # usage error


def test_generated_state_uses_octopoids_formats(tmp_path: Path) -> None:
    import re
    import sqlite3

    out = tmp_path / "q"
    truth = generate(out, 400, seed=3)
    root = out / ".orchestrator"
    scen = truth["scenarios"]
    done = next(t for t, s in scen.items() if s.startswith("happy path"))
    text = (root / "shared/queue/done" / f"TASK-{done}.md").read_text()
    assert re.fullmatch(
        rf"# \[TASK-{done}\] .+\n\nROLE: implement\nPRIORITY: P[0-3]\nBRANCH: main\n"
        r"CREATED: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\nCREATED_BY: human\n\n## Context\n"
        r"(.*\n)+## Acceptance Criteria\n(- \[ \] .+\n)+"
        r"\nCLAIMED_BY: .+\nCLAIMED_AT: .+\n\nSUBMITTED_AT: .+\nCOMMITS_COUNT: \d+\n"
        r"TURNS_USED: \d+\n\nACCEPTED_AT: .+\nACCEPTED_BY: scheduler\n", text), text
    conn = sqlite3.connect(root / "state.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        created, claimed_at = conn.execute("SELECT created_at, claimed_at FROM tasks WHERE id=?",
                                           (done,)).fetchone()
        events = [r[0] for r in conn.execute(
            "SELECT event FROM task_history WHERE task_id=? ORDER BY id", (done,))]
        no_history = conn.execute("SELECT count(*) FROM tasks WHERE id NOT IN "
                                  "(SELECT task_id FROM task_history)").fetchone()[0]
        agent_rows = {r[0] for r in conn.execute("SELECT name FROM agents")}
        claimers = {r[0] for r in conn.execute("SELECT DISTINCT claimed_by FROM tasks "
                                               "WHERE claimed_by IS NOT NULL")}
    finally:
        conn.close()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created)  # CURRENT_TIMESTAMP form
    assert "T" in claimed_at  # isoformat() form from the update path
    assert events == ["created", "claimed", "submitted", "accepted"] and no_history == 0
    agent_dirs = {p.name for p in (root / "agents").iterdir()}
    assert agent_dirs == agent_rows and 0 < len(agent_dirs) <= 50
    # every claim is by one of those agents, except the zombies whose agent left no state
    assert all(c.startswith("ghost-agent-") for c in claimers - agent_dirs)
    yaml = (root / "agents.yaml").read_text()
    assert all(f"- name: {a}\n" in yaml for a in agent_dirs)
    for rel, mtime in truth["mtimes"].items():
        assert (root / rel).stat().st_mtime == mtime
        if rel.endswith("heartbeat"):
            assert (root / rel).read_text().endswith("Z\n")
    bounced = [t for t, s in scen.items() if s.startswith("recycling: bounced")]
    assert bounced and all((root / "shared/notes" / f"TASK-{t}.md").is_file() for t in bounced)
    resumed = next(t for t, s in scen.items() if s.startswith("resumed"))
    assert (root / "shared/queue/claimed" / f"TASK-{resumed}.md").is_file()
    assert truth["tasks"][resumed] == []  # DB claimed accepts the file in claimed/


def test_small_n_keeps_exactly_n_and_drops_orphaned_agents(tmp_path: Path) -> None:
    truth = generate(tmp_path / "q", 12, seed=1)
    assert len(truth["tasks"]) == 12
    root = tmp_path / "q" / ".orchestrator"
    files = {p.name[5:-3] for p in root.glob("shared/queue/*/TASK-*.md")}
    assert files <= set(truth["tasks"])
    failed = [t for t, s in truth["scenarios"].items() if "failure" in s or "failed" in s]
    groups = Counter(tuple(truth["tasks"][t]) for t in failed)
    assert groups.get(("repeated_failure",), 0) in (0, 3, 4, 5)
    for status in root.glob("agents/*/status.json"):  # no agent works on a task that was cut
        assert json.loads(status.read_text())["task_id"] in truth["tasks"]
    precision, recall, diff = score(tmp_path / "q", truth)
    assert (precision, recall) == (1.0, 1.0), diff
