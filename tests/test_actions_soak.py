"""A short soak (the full one is ``make soak``): randomized interventions
against live simulated agents, some SIGKILLed mid-apply; no task lost, no divergence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from qwarden.core.actions.apply import apply
from qwarden.core.actions.soak import main, outcome_state, soak
from qwarden.core.formats.octopoid.actions import make_plan
from tests.test_actions_support import IDS, build_state


def test_short_soak(tmp_path: Path) -> None:
    lines: list[str] = []
    s = soak(60, seed=4, kill_rate=0.15, base=tmp_path, echo=lines.append)
    assert s["lost_tasks"] == 0 and s["divergences"] == 0, s["diverged"]
    assert s["done"] > 20
    assert "lost tasks: 0" in lines[0] and "action latency" in lines[0]


def test_outcome_state_tells_before_after(tmp_path: Path) -> None:
    root, now = build_state(tmp_path)
    plan = make_plan(root, "retry", IDS["failed"], actor="t", now=now)
    assert outcome_state(root, plan, None) == "before"
    aid = apply(root, plan).action_id
    assert outcome_state(root, plan, aid) == "after"
    (root / "shared/queue/incoming" / f"TASK-{IDS['failed']}.md").unlink()
    why: list[str] = []
    assert outcome_state(root, plan, aid, why) == "between" and why


def test_soak_cli_exit_code_and_no_scratch_left(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what TMPDIR sets
    assert main(["5", "--kill-rate", "0"]) == 0
    assert list(scratch.iterdir()) == []  # no qwarden-soak-* left behind
    kept = tmp_path / "kept"
    assert main(["3", "--kill-rate", "0", "--dir", str(kept)]) == 0
    assert (kept / "demo" / ".orchestrator" / "state.db").is_file()
    assert list(scratch.iterdir()) == []


def test_a_soak_that_fails_midway_leaves_no_scratch(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made: list[Path] = []

    def broken_plan(root: Path, *a: object, **k: object) -> None:
        made.append(root)
        raise KeyboardInterrupt  # as Ctrl-C in the middle of the run

    monkeypatch.setattr("qwarden.core.actions.soak.make_plan", broken_plan)
    with pytest.raises(KeyboardInterrupt):
        soak(5, kill_rate=0)
    assert made and made[0].is_relative_to(tmp_path)  # it did run in the scratch dir
    assert list(tmp_path.iterdir()) == []
