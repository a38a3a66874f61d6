"""RALF source on real files: both layouts, odd task names, broken links, FIFOs, corrupt
YAML (degraded to a line scan with a finding naming the line), event orders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.formats.ralf import layout as lay
from qwarden.core.formats.ralf.parse import (
    parse_events,
    parse_queue,
    parse_task_header,
    scan_events,
)
from qwarden.core.formats.ralf.source import RalfSource
from qwarden.core.sources.errors import SourceError
from qwarden.core.timefmt import parse_as_of

AS_OF = parse_as_of("2026-02-01T13:20:00Z")
HDR = "# {tid}: {title}\n\n**Type:** fix\n**Priority:** high\n**Status:** pending\n" \
      "**Created:** 2026-02-01T10:00:00Z\n\n## Objective\n"
HB = ("heartbeats:\n  planner:\n    last_seen: '2026-02-01T13:19:30Z'\n    status: running\n"
      "  executor:\n    last_seen: '2026-02-01T13:19:00Z'\n    status: running\n"
      "metadata:\n  timeout_seconds: 120\n")


def _later_layout(root: Path) -> Path:
    """agents/communications + tasks/active|completed/<ID>/task.md at the project root."""
    comms = root / ".autonomous" / "agents" / "communications"
    comms.mkdir(parents=True)
    (comms / "queue.yaml").write_text(
        "queue:\n  - task_id: TASK-10\n    status: pending\n"
        "  - task_id: TASK-11\n    status: in_progress\n"
        "  - task_id: TASK-12\n    status: pending\n"
        "metadata:\n  current_depth: 2\n  last_completed: TASK-11\n")
    (comms / "events.yaml").write_text(
        "events:\n"  # newest first
        "- timestamp: '2026-02-01T13:00:00Z'\n  task_id: TASK-11\n  type: completed\n"
        "  agent: executor\n  run_number: 9\n"
        "- timestamp: '2026-02-01T13:10:00Z'\n  task_id: TASK-10\n  type: completed\n"
        "  agent: executor\n  run_number: 8\n")
    (comms / "heartbeat.yaml").write_text(HB)
    for place, tid in (("active", "TASK-10-some-slug"), ("completed", "TASK-11-other"),
                       ("active", "TASK-13-new")):
        d = root / "tasks" / place / tid
        d.mkdir(parents=True)
        (d / "task.md").write_text(HDR.format(tid=tid[:7], title=tid))
    (root / "tasks" / "active" / "TASK-[timestamp]").mkdir()  # an unfilled template dir
    (root / "tasks" / "active" / "TASK-14").mkdir()  # a dir without task.md
    return root


@pytest.mark.parametrize("as_autonomous", [False, True])
def test_later_layout_read_from_project_or_autonomous(tmp_path: Path, as_autonomous: bool
                                                      ) -> None:
    root = _later_layout(tmp_path / "p")
    given_root = root / ".autonomous" if as_autonomous else root
    assert lay.detect(given_root)
    findings, src = judge_once(given_root, AS_OF, fmt="ralf")
    tasks = src.all_tasks()
    assert set(tasks) == {"TASK-10", "TASK-11", "TASK-12", "TASK-13"}
    assert tasks["TASK-10"].primary_file.path == "tasks/active/TASK-10-some-slug/task.md"  # type: ignore[union-attr]
    got = kinds_by_subject(findings)
    assert got == {
        "TASK-10": {"queue_stale_entry"},  # completed by its event, file still in active/
        "TASK-11": {"queue_stale_entry"},  # in_progress, yet completed/
        "TASK-12": {"queue_orphan_entry"},  # no file, no event
        "TASK-13": {"missing_from_queue"},
        # newest-first file: run 9 (TASK-11) is the latest, not the larger stamp of TASK-10;
        # current_depth 2 while only TASK-12 is still to do
        "queue": {"stale_queue_metadata"},
    }
    meta = next(f for f in findings if f.kind == "stale_queue_metadata")
    assert "current_depth says 2, 1 entries" in meta.summary
    assert "last_completed" not in meta.summary  # TASK-11 is right
    facts = {(f.subject, f.name): f.value for f in src.facts()}
    assert facts[("queue", "events_order")] == "newest-first"
    assert facts[("queue", "latest_completion")] == "TASK-11"
    probs = {p.path: p.message for p in src.problems()}
    assert probs == {"tasks/active/TASK-14": "task directory without a task.md"}


def test_broken_symlink_fifo_and_link_out_are_problems_never_hangs(tmp_path: Path) -> None:
    root = tmp_path / "p"
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (comms / "queue.yaml").write_text("queue: []\n")
    active = root / ".autonomous" / "tasks" / "active"
    active.mkdir(parents=True)
    (active / "TASK-1-broken.md").symlink_to(root / "nowhere.md")
    os.mkfifo(active / "TASK-2.md")
    outside = tmp_path / "outside.md"
    outside.write_text(HDR.format(tid="TASK-3", title="out"))
    (active / "TASK-3.md").symlink_to(outside)
    (active / "TASK-4").mkdir()
    os.symlink(root / "gone", active / "TASK-4" / "task.md")
    (active / "TEMPLATE.md").write_text("# Task Template\n")
    (active / "STOP_1769783023.md").write_text("stop\n")
    (active / "TASK-5.md").write_text(HDR.format(tid="TASK-5", title="ok"))
    findings, src = judge_once(root, AS_OF, fmt="ralf")
    assert set(src.all_tasks()) == {"TASK-5"}
    probs = {p.path: p.message for p in src.problems()}
    assert set(probs) == {".autonomous/tasks/active/TASK-1-broken.md",
                          ".autonomous/tasks/active/TASK-2.md",
                          ".autonomous/tasks/active/TASK-3.md",
                          ".autonomous/tasks/active/TASK-4/task.md"}
    assert "broken symlink" in probs[".autonomous/tasks/active/TASK-1-broken.md"]
    assert "FIFO" in probs[".autonomous/tasks/active/TASK-2.md"]
    assert "out of the project" in probs[".autonomous/tasks/active/TASK-3.md"]
    assert kinds_by_subject(findings) == {"TASK-5": {"missing_from_queue"}}


def test_corrupt_events_degrade_to_a_line_scan_with_a_finding(tmp_path: Path) -> None:
    root = tmp_path / "p"
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (comms / "queue.yaml").write_text("queue:\n  - id: TASK-1\n    status: pending\n")
    (comms / "events.yaml").write_text(
        "events:\n- timestamp: '2026-02-01T13:00:00Z'\n  task_id: TASK-1\n  type: completed\n"
        "  agent: executor\n  run_number: 3\n  impact: \"unterminated\n"
        "- timestamp: '2026-02-01T13:05:00Z'\n  task_id: TASK-2\n  type: started\n")
    (comms / "heartbeat.yaml").write_text(HB)
    findings, src = judge_once(root, AS_OF, fmt="ralf")
    got = kinds_by_subject(findings)
    assert got["queue"] == {"corrupt_queue_file"}
    assert got["TASK-1"] == {"queue_stale_entry"}  # the scan still found its completed event
    corrupt = next(f for f in findings if f.kind == "corrupt_queue_file")
    assert any(e.value.startswith(".autonomous/communications/events.yaml:") for e in
               corrupt.evidence)
    assert src.events.scanned and [e.line for e in src.events.events] == [2, 8]


def test_corrupt_queue_is_critical_and_names_its_line(tmp_path: Path) -> None:
    root = tmp_path / "p"
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (comms / "queue.yaml").write_text("queue:\n  - id: TASK-1\n    status: [pending\n")
    findings, _ = judge_once(root, AS_OF, fmt="ralf")
    corrupt = [f for f in findings if f.kind == "corrupt_queue_file"]
    assert len(corrupt) == 1 and corrupt[0].severity.value == "critical"
    assert any(":4" in e.value or ":3" in e.value for e in corrupt[0].evidence)


def test_no_autonomous_dir_is_a_source_error(tmp_path: Path) -> None:
    assert not lay.detect(tmp_path)
    with pytest.raises(SourceError):
        RalfSource(tmp_path)


def test_stale_heartbeat_and_future_signals(tmp_path: Path) -> None:
    root = tmp_path / "p"
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (comms / "heartbeat.yaml").write_text(
        "heartbeats:\n  planner:\n    last_seen: '2026-02-01T13:10:00Z'\n"
        "  executor:\n    last_seen: '2026-02-01T19:00:00Z'\nmetadata:\n  timeout_seconds: 900\n")
    findings, _ = judge_once(root, AS_OF, fmt="ralf")
    got = kinds_by_subject(findings)
    assert got == {"agent:executor": {"stale_heartbeat"}}  # planner: 600 s < its 900 s
    assert kinds_by_subject(findings, scored=False) == {"agent:executor": {"future_timestamp"}}


def test_header_block_only() -> None:
    h = parse_task_header("# TASK-7: Seven\n\n**Status:** pending\n**Type:** fix\n\n"
                          "## Notes\n**Status:** completed\n**Owner:** x\n")
    assert h.declared_id == "TASK-7" and h.title == "Seven"
    assert dict(h.fields) == {"Status": "pending", "Type": "fix"}


def test_task_ids_of_names() -> None:
    assert lay.task_id_of("TASK-1769916009-research-feature-idea-generation.md") == \
        "TASK-1769916009"
    assert lay.task_id_of("TASK-1769915001-enforce-template-convention.md") == \
        "TASK-1769915001"
    assert lay.task_id_of("TASK-X-some-slug") is None  # the unfilled template's own name
    assert lay.task_id_of("TASK-abc-some-slug") == "TASK-abc"
    assert lay.task_id_of("TASK-[timestamp].md") is None
    assert lay.task_id_of("RALF-2026-01-30-001.md") is None


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_readers_never_raise(text: str) -> None:
    ev = parse_events(text)
    assert all(e.line >= 0 for e in ev.events)
    scan_events(text)
    parse_queue(text)
    parse_task_header(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["started", "completed"]),
                          st.integers(0, 99)), max_size=12), st.booleans())
def test_latest_completion_is_by_run_number_either_order(evs: list[tuple[str, int]],
                                                         newest_first: bool) -> None:
    from qwarden.core.formats.ralf.source import latest_completion
    rows = [f"- task_id: TASK-{i}\n  type: {t}\n  run_number: {r}\n"
            f"  timestamp: '2026-02-01T{(99 - r) % 24:02d}:00:00Z'\n"
            for i, (t, r) in enumerate(evs)]
    if newest_first:
        rows.reverse()
    ef = parse_events("events:\n" + "".join(rows))
    got = latest_completion(ef.events)
    done = [(r, i) for i, (t, r) in enumerate(evs) if t == "completed"]
    if not done:
        assert got is None
    else:
        best_run = max(r for r, _ in done)
        assert got is not None and got.run_number == best_run


def test_is_a_source_and_rescan_reports_what_changed(tmp_path: Path) -> None:
    from qwarden.core.formats.ralf import FORMAT_INFO
    from qwarden.core.sources.base import Source

    root = _later_layout(tmp_path / "p")
    assert FORMAT_INFO.name == "ralf" and FORMAT_INFO.detect(root)
    src = FORMAT_INFO.open(root, None, False, False)  # type: ignore[arg-type]
    assert isinstance(src, Source)
    src.scan()
    assert not src.rescan()  # nothing moved
    d = root / "tasks" / "active" / "TASK-13-new"
    d.rename(root / "tasks" / "completed" / "TASK-13-new")
    delta = src.rescan()
    assert delta.tasks == {"TASK-13"}
    assert src.task("TASK-13").primary_file.queue == "completed"  # type: ignore[union-attr]
    hb = root / ".autonomous" / "agents" / "communications" / "heartbeat.yaml"
    hb.write_text(HB.replace("13:19:30", "13:19:45"))
    assert src.rescan().agents == {"planner"}
