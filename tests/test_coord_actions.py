"""The coordination interventions: what each changes, what each refuses, and undo that puts
the queue back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Refused, StalePlan
from qwarden.core.formats.coordination import actions as A
from qwarden.core.formats.coordination import simulate as S
from qwarden.core.formats.coordination.generate import generate
from qwarden.core.timefmt import parse_any
from tests.coord_util import entry, judged, now, worker, write_state


def _q(root: Path) -> dict[str, dict]:
    return {str(e["id"]): e for e in json.loads((root / "task-queue.json").read_text())
            if isinstance(e, dict) and "id" in e}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "q"
    write_state(r, [
        entry(1, "in_progress", "dead-w", claim_age_s=900),
        entry(2, "in_progress", "live-w", claim_age_s=20,
              metadata={"required_skills": ["ui"]}),
        entry(3, "failed", "live-w", claim_age_s=3000, error="TimeoutError: 30 s"),
        entry("task-4", "pending", metadata={"required_skills": ["backend"]}),
        entry(5, "completed", "live-w", result={"status": "success"}),
    ], {"dead-w": worker(["backend"], 600), "live-w": worker(["backend"], 5),
        "ui-w": worker(["ui", "backend"], 5)})
    return r


def test_reset_a_dead_workers_task_and_undo_byte_identical(root: Path) -> None:
    before = (root / "task-queue.json").read_bytes()
    p = A.plan(root, "reset", "1")
    assert any("status" in ln and "pending" in ln for ln in p.describe())
    aid = A.apply(root, p)
    e = _q(root)["1"]
    assert (e["status"], e["claimed_by"], e["claimed_at"]) == ("pending", None, None)
    assert e["metadata"]["reset_count"] == 1
    # only the touched entry's bytes changed
    after = (root / "task-queue.json").read_bytes()
    assert after.count(b"\n") == before.count(b"\n") + 2  # metadata {} -> one key
    assert before.split(b'"id": 2,', 1)[1] == after.split(b'"id": 2,', 1)[1]
    assert "zombie_claim" not in judged(root, now()).get("1", set())
    A.undo(root, aid)
    assert (root / "task-queue.json").read_bytes() == before
    with Journal(root) as j:
        row = j.get(aid)
        assert row is not None and row.state == "undone"
        assert [a["event"] for a in j.read_audit()] == ["applied", "undone"]


def test_live_workers_tasks_are_refused(root: Path) -> None:
    for action, kw in (("reset", {}), ("cancel", {"note": "x"}), ("reassign", {}),
                       ("split", {"subtasks": ("a", "b")})):
        with pytest.raises(Refused, match="live worker holds it"):
            A.plan(root, action, "2", **kw)


def test_a_worker_that_comes_back_between_plan_and_apply_is_refused(root: Path) -> None:
    p = A.plan(root, "reset", "1")
    S.heartbeat(root, "dead-w")  # alive again, and it holds the task
    before = (root / "task-queue.json").read_bytes()
    with pytest.raises(Refused, match="live worker"):
        A.apply(root, p)
    assert (root / "task-queue.json").read_bytes() == before


def test_retry_keeps_the_old_error(root: Path) -> None:
    aid = A.apply(root, A.plan(root, "retry", "3"))
    e = _q(root)["3"]
    assert e["status"] == "pending" and e["error"] is None and e["claimed_by"] is None
    assert e["metadata"]["previous_errors"] == ["TimeoutError: 30 s"]
    assert e["metadata"]["retry_count"] == 1
    with pytest.raises(Refused):
        A.plan(root, "retry", "5")
    A.undo(root, aid)
    assert _q(root)["3"]["status"] == "failed"


def test_reassign_goes_to_a_live_worker_with_the_skills(root: Path) -> None:
    with pytest.raises(Refused, match="not live"):
        A.plan(root, "reassign", "task-4", to="dead-w")
    with pytest.raises(Refused, match="not in worker-status"):
        A.plan(root, "reassign", "task-4", to="nobody")
    p = A.plan(root, "reassign", "1")  # dead worker's task: reset and assign
    A.apply(root, p)
    e = _q(root)["1"]
    assert e["status"] == "pending" and e["assigned_to"] in ("live-w", "ui-w")
    write_state(root / "x", [entry(7, metadata={"required_skills": ["ui"]})],
                {"a": worker(["backend"], 5), "b": worker(["ui"], 5)})
    A.apply(root / "x", A.plan(root / "x", "reassign", "7"))
    assert _q(root / "x")["7"]["assigned_to"] == "b"
    with pytest.raises(Refused, match="lacks ui"):
        A.plan(root / "x", "reassign", "7", to="a")


def test_cancel_needs_a_note_and_takes_the_task_out_of_the_lanes(root: Path) -> None:
    with pytest.raises(Refused, match="note"):
        A.plan(root, "cancel", "task-4")
    A.apply(root, A.plan(root, "cancel", "task-4", note="not needed"))
    e = _q(root)["task-4"]
    assert e["status"] == "cancelled" and e["metadata"]["cancelled_note"] == "not needed"
    assert S.claim(root, "live-w", ["backend", "ui"]) is None  # workers claim only pending


def test_split_makes_new_tasks_with_instruction_files_and_undo_removes_them(root: Path
                                                                             ) -> None:
    before = (root / "task-queue.json").read_bytes()
    p = A.plan(root, "split", "task-4", subtasks=("first half", "second half"), note="big")
    aid = A.apply(root, p)
    q = _q(root)
    assert q["task-4"]["status"] == "cancelled"
    new = q["task-4"]["metadata"]["split_into"]
    assert len(new) == 2 and all(str(i).startswith("task-") for i in new)
    for i in new:
        e = q[str(i)]
        assert e["status"] == "pending" and e["metadata"]["split_from"] == "task-4"
        assert e["metadata"]["required_skills"] == ["backend"]
        assert (root / e["instruction_file"]).read_text().startswith("# Task: ")
    assert judged(root, now()).get(str(new[0]), set()) == set()
    A.undo(root, aid)
    assert (root / "task-queue.json").read_bytes() == before
    assert not list((root / "tasks").glob("*split*"))


def test_undo_refuses_when_a_worker_changed_the_entry_since(root: Path) -> None:
    aid = A.apply(root, A.plan(root, "reset", "1"))
    assert S.claim(root, "live-w", ["backend"]) == 1  # claimed again at once
    with pytest.raises(StalePlan):
        A.undo(root, aid)
    assert _q(root)["1"]["claimed_by"] == "live-w"


def test_undo_is_entry_wise_when_other_entries_changed(root: Path) -> None:
    aid = A.apply(root, A.plan(root, "retry", "3"))

    def other(q: list) -> bool:  # another entry changes meanwhile (the whole file rewritten)
        q[3].update(status="in_progress", claimed_by="ui-w")
        return True
    S.update_queue(root, other)
    A.undo(root, aid)
    q = _q(root)
    assert q["3"]["status"] == "failed" and q["3"]["error"] == "TimeoutError: 30 s"
    assert q["task-4"]["claimed_by"] == "ui-w"  # the worker's write survives the undo


def test_repair_keeps_every_valid_entry_backs_up_and_undoes(tmp_path: Path) -> None:
    truth = generate(400, tmp_path / "g", 5)
    root = tmp_path / "g"
    before = (root / "task-queue.json").read_bytes()
    valid = [e for e in json.loads(before) if isinstance(e, dict) and "id" in e
             and "status" in e]
    p = A.plan(root, "repair")
    assert p.dropped and all("entry #" in d for d in p.dropped)
    aid = A.apply(root, p)
    assert json.loads((root / "task-queue.json").read_bytes()) == valid
    assert (root / "warden" / "backups" / f"task-queue.json.{aid}.bak").read_bytes() == before
    got = judged(root)
    assert "queue" not in got
    want = {s: set(k) for s, k in truth["tasks"].items() if k and s != "queue"}
    assert got == want  # nothing else changed
    with pytest.raises(Refused, match="nothing to repair"):
        A.plan(root, "repair")
    A.undo(root, aid)
    assert (root / "task-queue.json").read_bytes() == before


def test_repair_of_a_torn_file_and_actions_refused_until_then(root: Path) -> None:
    data = (root / "task-queue.json").read_bytes()
    (root / "task-queue.json").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(Refused, match="not valid JSON"):
        A.plan(root, "reset", "1")
    p = A.plan(root, "repair")
    A.apply(root, p)
    q = json.loads((root / "task-queue.json").read_text())
    assert [e["id"] for e in q] == [1, 2, 3][: len(q)] and len(q) >= 2


def test_generated_zombies_reset_clears_their_findings(tmp_path: Path) -> None:
    truth = generate(300, tmp_path / "g", 3)
    root = tmp_path / "g"
    as_of = parse_any(truth["as_of"])
    zombies = [t for t, k in truth["tasks"].items() if k == ["zombie_claim"]]
    for t in zombies:
        A.apply(root, A.plan(root, "reset", t, as_of=as_of), now=as_of)
    got = judged(root)
    assert not any("zombie_claim" in got.get(t, set()) for t in zombies)


@pytest.mark.parametrize("step,state", [("coord:before-replace", "rolled_back"),
                                        ("coord:after-replace", "done")])
def test_a_crash_mid_apply_is_settled_by_the_next_writer(root: Path, step: str, state: str
                                                         ) -> None:
    import os
    import subprocess
    import sys

    before = (root / "task-queue.json").read_bytes()
    code = ("from qwarden.core.formats.coordination import actions as A\n"
            f"A.apply({str(root)!r}, A.plan({str(root)!r}, 'split', 'task-4', "
            "subtasks=('a', 'b')))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ,
                          QWARDEN_CRASH_AT=step), cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9
    with Journal(root) as j:
        assert [r.state for r in j.unfinished()] == ["applying"]
    (aid, outcome), = A.recover(root)
    assert aid == 1 and outcome.split()[0] == {"done": "done", "rolled_back": "rolled"}[state]
    with Journal(root) as j:
        assert j.get(1).state == state  # type: ignore[union-attr]
    if state == "rolled_back":
        assert (root / "task-queue.json").read_bytes() == before
        assert not list((root / "tasks").glob("*split*"))
    else:
        assert _q(root)["task-4"]["status"] == "cancelled"
        A.undo(root, 1)
        assert (root / "task-queue.json").read_bytes() == before


@pytest.mark.parametrize("step", [4, "\t"])
def test_an_edited_entry_keeps_the_files_own_indent(root: Path, step: int | str) -> None:
    """A queue written with indent=4 (or tabs) keeps that indent in the entries an action
    rewrites, so the file still reads as one hand wrote it."""
    qfile = root / "task-queue.json"
    qfile.write_text(json.dumps(json.loads(qfile.read_text()), indent=step) + "\n")
    unit = " " * step if isinstance(step, int) else step
    A.apply(root, A.plan(root, "reset", "1"))
    text = qfile.read_text()
    json.loads(text)
    assert '"reset_count": 1' in text
    for line in text.splitlines():
        lead = line[:len(line) - len(line.lstrip())]
        assert lead == unit * (len(lead) // len(unit)), repr(line)  # whole steps only
