"""qwarden sync for RALF: the sample's sync, round trip (sync, undo, byte-identical), refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Refused, StalePlan
from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.formats.ralf.parse import parse_queue
from qwarden.core.formats.ralf.sync import apply_sync, plan_sync, undo_sync
from qwarden.core.timefmt import parse_as_of
from tests.ralf_util import RALF_SAMPLE, copy_sample, tree, tree_bytes

AS_OF = parse_as_of("2026-02-01T13:20:00Z")
needs_sample = pytest.mark.skipif(not RALF_SAMPLE.is_dir(), reason="../shared/fixtures absent")
QUEUE = ".autonomous/communications/queue.yaml"


def _ids(data: bytes) -> list[str]:
    return [e.task_id for e in parse_queue(data.decode()).entries]


@needs_sample
def test_sample_sync_removes_what_the_manual_sync_did_and_adds_the_missing(tmp_path: Path
                                                                           ) -> None:
    root = copy_sample(tmp_path / "s")
    before = tree(root)
    plan = plan_sync(root, AS_OF)
    assert tree(root) == before  # planning (and --dry-run) writes nothing
    manual = (RALF_SAMPLE / "after-manual-sync" / QUEUE).read_bytes()
    removed_by_hand = set(_ids(plan.before)) - set(_ids(manual))
    assert set(plan.removed) == removed_by_hand == {
        "TASK-1769916003", "TASK-1769916005", "TASK-1769916006"}
    assert plan.added == ("TASK-1769916007", "TASK-1769916008", "TASK-1769916009")
    assert _ids(plan.after) == list(plan.added)
    q = parse_queue(plan.after.decode())
    assert q.metadata["last_completed"].value == "TASK-1769916006"
    assert q.metadata["current_depth"].value == "3"  # the live count: the 3 added
    e7 = q.entries[0]
    assert (e7.id_key, e7.type, e7.priority, e7.status) == ("id", "implement", "high", "pending")
    assert e7.title == "Implement Feature F-001 (Multi-Agent Coordination System)"
    text = plan.after.decode()
    # the rest of the file as the planner wrote it: notes block, key order, quoting
    old_notes = plan.before.decode().split("  notes: |\n", 1)[1]
    assert text.split("  notes: |\n", 1)[1] == old_notes
    assert "  queue_depth_target: 3-5\n  current_depth: 3\n  last_completed: TASK-1769916006\n" \
        in text
    assert "\n\n  - id: TASK-1769916008\n" in text  # the blank line between entries kept
    diff = "".join(plan.diff)
    assert "-  - id: TASK-1769916003" in diff and "+  - id: TASK-1769916007" in diff

    applied = apply_sync(plan)
    assert (root / QUEUE).read_bytes() == plan.after
    backup = root / ".autonomous" / plan.backup_rel
    assert backup.read_bytes() == plan.before
    assert backup.name.startswith("queue.yaml.backup.")
    # after the sync, the queue's findings are gone
    findings, _ = judge_once(root, AS_OF, fmt="ralf")
    got = kinds_by_subject(findings)
    assert not any(k & {"queue_stale_entry", "missing_from_queue", "stale_queue_metadata"}
                   for k in got.values()), got
    # a second sync has nothing to do
    assert not plan_sync(root, AS_OF).changes
    with Journal(root / ".autonomous") as j:
        row = j.get(applied.action_id)
        assert row is not None and row.state == "done" and row.kind == "ralf-sync"
        assert j.file_backups(applied.action_id)[plan.queue_rel] == plan.before
    undo_sync(root)
    assert tree_bytes(root) == {k: v[0] for k, v in before.items()}  # byte-identical
    with Journal(root / ".autonomous") as j:
        assert j.get(applied.action_id).state == "undone"  # type: ignore[union-attr]
    with pytest.raises(Refused):
        undo_sync(root)  # nothing left to undo


@needs_sample
def test_sync_refuses_a_queue_changed_since_the_plan(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "s")
    plan = plan_sync(root, AS_OF)
    with open(root / QUEUE, "ab") as fh:
        fh.write(b"# the planner wrote meanwhile\n")
    changed = (root / QUEUE).read_bytes()
    with pytest.raises(StalePlan):
        apply_sync(plan)
    assert (root / QUEUE).read_bytes() == changed
    assert not (root / ".autonomous" / plan.backup_rel).exists()


@needs_sample
def test_undo_refuses_when_the_planner_wrote_after_the_sync(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "s")
    apply_sync(plan_sync(root, AS_OF))
    with open(root / QUEUE, "ab") as fh:
        fh.write(b"# planner\n")
    mine = (root / QUEUE).read_bytes()
    with pytest.raises(StalePlan):
        undo_sync(root)
    assert (root / QUEUE).read_bytes() == mine


def _state(root: Path, queue: str, events: str = "events: []\n",
           active: dict[str, str] | None = None, completed: dict[str, str] | None = None
           ) -> Path:
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (comms / "queue.yaml").write_text(queue)
    (comms / "events.yaml").write_text(events)
    for place, files in (("active", active or {}), ("completed", completed or {})):
        d = root / ".autonomous" / "tasks" / place
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text)
    return root


HDR = "# {tid}: {title}\n\n**Type:** fix\n**Priority:** HIGH\n**Status:** pending\n" \
      "**Created:** 2026-02-01T10:00:00Z\n\n## Objective\n**Status:** done\n"


def test_sync_keeps_comments_task_id_key_and_flow_entries(tmp_path: Path) -> None:
    queue = (
        "# Queue written by the planner\n"
        "queue:\n"
        "- task_id: TASK-2  # keep me\n"
        "  title: \"Two: quoted\"\n"
        "  status: pending\n"
        "- task_id: TASK-3\n"
        "  title: Three\n"
        "  status: in_progress\n"
        "metadata:\n"
        "  current_depth: 2  # depth comment\n"
        "  last_completed: TASK-1\n")
    events = ("events:\n"
              "- {timestamp: '2026-02-01T10:00:00Z', task_id: TASK-2, type: completed, "
              "agent: executor, run_number: 7}\n")
    root = _state(tmp_path / "s", queue, events,
                  active={"TASK-2-two.md": HDR.format(tid="TASK-2", title="Two"),
                          "TASK-3.md": HDR.format(tid="TASK-3", title="Three"),
                          "TASK-4-new-one.md": HDR.format(tid="TASK-4", title="New: one")})
    plan = plan_sync(root, parse_as_of("2026-02-01T11:00:00Z"))
    assert plan.removed == ("TASK-2",)  # by its event (its file is still in active/)
    assert plan.warnings and "event only" in plan.warnings[0]
    assert plan.added == ("TASK-4",)
    text = plan.after.decode()
    assert text.startswith("# Queue written by the planner\nqueue:\n- task_id: TASK-3\n")
    assert "- task_id: TASK-4\n" in text and "priority: high" in text
    assert "title: 'New: one'" in text or 'title: "New: one"' in text
    assert "current_depth: 2  # depth comment" in text  # TASK-3 and TASK-4 are to do
    assert "last_completed: TASK-2\n" in text
    before = tree_bytes(root)
    apply_sync(plan)
    undo_sync(root)
    assert tree_bytes(root) == before


def test_sync_refuses_a_corrupt_queue_and_writes_nothing(tmp_path: Path) -> None:
    root = _state(tmp_path / "s", "queue:\n  - id: TASK-1\n   status: [pending\n")
    before = tree_bytes(root)
    with pytest.raises(Refused, match="does not parse"):
        plan_sync(root, AS_OF)
    assert tree_bytes(root) == before


def test_read_only_refuses(tmp_path: Path) -> None:
    root = _state(tmp_path / "s", "queue: []\n",
                  active={"TASK-9.md": HDR.format(tid="TASK-9", title="Nine")})
    plan = plan_sync(root, AS_OF)
    assert plan.added == ("TASK-9",)
    with pytest.raises(Refused, match="read-only"):
        apply_sync(plan, read_only=True)
    assert not (root / ".autonomous" / "warden").exists()
    assert os.listdir(root / ".autonomous" / "communications") == ["queue.yaml", "events.yaml"] \
        or sorted(os.listdir(root / ".autonomous" / "communications")) == [
            "events.yaml", "queue.yaml"]


@needs_sample
def test_interrupted_sync_is_rolled_back_from_the_journal(tmp_path: Path) -> None:
    """A qwarden killed between writing queue.yaml and marking the action done: the next
    writer restores the journaled bytes and removes the backup it made."""
    import qwarden.core.formats.ralf.sync as sync_mod

    root = copy_sample(tmp_path / "s")
    before = tree_bytes(root)
    plan = plan_sync(root, AS_OF)
    real_set_state = Journal.set_state

    def killed(self: Journal, aid: int, state: str, error: str | None = None) -> None:
        if state == "done":
            raise KeyboardInterrupt  # stands in for the SIGKILL after the writes
        real_set_state(self, aid, state, error)

    Journal.set_state = killed  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            sync_mod.apply_sync(plan)
    finally:
        Journal.set_state = real_set_state  # type: ignore[method-assign]
    assert (root / QUEUE).read_bytes() == plan.after  # the writes happened
    with Journal(root / ".autonomous") as j:
        assert [r.state for r in j.unfinished()] == ["applying"]
        assert sync_mod._recover(root / ".autonomous", j) == [1]
        assert j.get(1).state == "rolled_back"  # type: ignore[union-attr]
    assert tree_bytes(root) == before


def test_module_cli_dry_run_shows_diff_and_writes_nothing(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from qwarden.core.formats.ralf.sync import main

    root = _state(tmp_path / "s", "queue: []\n",
                  active={"TASK-9.md": HDR.format(tid="TASK-9", title="Nine")})
    before = tree_bytes(root)
    assert main(["--root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+  - id: TASK-9" in out and "--- a/communications/queue.yaml" in out
    assert tree_bytes(root) == before
    assert main(["--root", str(root), "--yes"]) == 0
    assert "TASK-9" in (root / QUEUE).read_text()
    assert main(["--root", str(root), "--undo"]) == 0
    assert tree_bytes(root) == before
