"""Crash safety: SIGKILL the applying process at every journal step, then ``recover()`` must
leave the DB and the files equal to the before state or the after state, never in between.

The apply runs in a subprocess with ``QWARDEN_CRASH_AT=<step>`` (checked in core.actions.apply);
the expected after state comes from applying the same plan, uninterrupted, to a copy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from qwarden.core.actions.apply import CRASH_ENV, apply, recover, undo
from qwarden.core.actions.journal import Journal
from qwarden.core.formats.octopoid.actions import make_plan
from tests.test_actions_support import IDS, build_state, snapshot

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 22, 30, 0)

RUNNER = """
import json, sys
from pathlib import Path
from qwarden.core.actions.apply import apply, undo
from qwarden.core.actions.plan import Plan
root = Path(sys.argv[1])
if sys.argv[2] == "undo":
    undo(root, int(sys.argv[3]))
else:
    apply(root, Plan.from_json(json.loads(Path(sys.argv[2]).read_text())))
"""

BEFORE, AFTER = "before", "after"
MOVE_DB = [("intent", BEFORE), ("file:0:tmp", BEFORE), ("file:0:linked", BEFORE),
           ("file:0:grabbed", BEFORE), ("file:0", BEFORE), ("rows", BEFORE),
           ("commit", AFTER), ("done", AFTER)]
WRITE_DB = [("intent", BEFORE), ("file:0:tmp", BEFORE), ("file:0", BEFORE), ("rows", BEFORE),
            ("commit", AFTER), ("done", AFTER)]
MOVE_NO_DB = [("intent", BEFORE), ("file:0:tmp", BEFORE), ("file:0:linked", BEFORE),
              ("file:0:grabbed", BEFORE), ("file:0", BEFORE), ("done", AFTER)]

CASES = ([("retry", IDS["failed"], s, w) for s, w in MOVE_DB]
         + [("clear-error", IDS["stale_error"], s, w) for s, w in WRITE_DB]
         + [("escalate", IDS["failed"], s, w) for s, w in WRITE_DB if s != "file:0:linked"]
         + [("quarantine", IDS["corrupt"], s, w) for s, w in MOVE_NO_DB])


def _run(root: Path, step: str, *argv: str) -> int:
    env = dict(os.environ, **{CRASH_ENV: step}, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(root), *argv], env=env,
                          capture_output=True, timeout=60)
    return proc.returncode


def _no_leftovers(root: Path) -> None:
    tmp = [p for p in root.rglob(".*.qw*") if p.suffix in (".tmp", ".grab")]
    assert tmp == [], f"temp files left behind: {tmp}"
    with Journal(root) as j:
        assert j.unfinished() == []


@pytest.mark.parametrize(("kind", "tid", "step", "expect"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_sigkill_at_every_step(tmp_path: Path, kind: str, tid: str, step: str,
                               expect: str) -> None:
    root, _ = build_state(tmp_path / "a", now=NOW)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    plan = make_plan(root, kind, tid, actor="qwarden:crash", note="crash test", now=NOW)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json()))
    twin = tmp_path / "b" / ".orchestrator"
    apply(twin, plan)
    after = snapshot(twin)
    before = snapshot(root)
    assert before != after

    rc = _run(root, step, str(plan_file))
    assert rc == -signal.SIGKILL, f"step {step} was never reached (rc {rc})"
    recover(root)
    got = snapshot(root)
    assert got == (before if expect == BEFORE else after)
    _no_leftovers(root)
    # the queue is usable again: the same action applies cleanly when it was rolled back
    if expect == BEFORE:
        apply(root, make_plan(root, kind, tid, actor="qwarden:crash", note="crash test",
                              now=NOW))
        assert snapshot(root)["files"] == after["files"]


UNDO_STEPS = [("intent", AFTER), ("file:0:tmp", AFTER), ("file:0:linked", AFTER),
              ("file:0:grabbed", AFTER), ("file:0", AFTER), ("rows", AFTER),
              ("commit", BEFORE), ("done", BEFORE)]


@pytest.mark.parametrize(("step", "expect"), UNDO_STEPS, ids=[s for s, _ in UNDO_STEPS])
def test_sigkill_during_undo(tmp_path: Path, step: str, expect: str) -> None:
    """Undo is an action too: killed mid-way, it is either fully undone or not at all."""
    root, _ = build_state(tmp_path, now=NOW)
    before = snapshot(root)
    aid = apply(root, make_plan(root, "retry", IDS["failed"], actor="t", now=NOW)).action_id
    after = snapshot(root)
    assert _run(root, step, "undo", str(aid)) == -signal.SIGKILL
    recover(root)
    assert snapshot(root) == (before if expect == BEFORE else after)
    _no_leftovers(root)
    with Journal(root) as j:
        original = j.get(aid)
        assert original is not None
        assert original.state == ("undone" if expect == BEFORE else "done")
    if expect == AFTER:
        undo(root, aid)
        assert snapshot(root) == before
