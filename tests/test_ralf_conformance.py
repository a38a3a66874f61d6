"""Conformance against the real RALF sample in ../shared (skipped in a bare clone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.timefmt import parse_as_of
from tests.ralf_util import RALF_SAMPLE, copy_sample, tree

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not RALF_SAMPLE.is_dir(), reason="../shared/fixtures absent"),
]


def _truth() -> dict:
    return json.loads((RALF_SAMPLE / "truth.json").read_text())


def test_sample_scored_kinds_match_truth_exactly(tmp_path: Path) -> None:
    truth = _truth()
    root = copy_sample(tmp_path / "s")
    before = tree(root)
    findings, _ = judge_once(root, parse_as_of(truth["as_of"]), fmt="ralf")
    got = kinds_by_subject(findings)
    want = {s: set(k) for s, k in truth["tasks"].items() if k}
    assert got == want  # P = R = 1, and no scored finding on any other subject
    info = kinds_by_subject(findings, scored=False)
    for subject, kinds in truth["unscored_info"].items():
        assert set(kinds) <= info.get(subject, set()), subject
    assert tree(root) == before  # reading changed no byte and no mtime


def test_sample_evidence_names_files_and_lines(tmp_path: Path) -> None:
    truth = _truth()
    root = copy_sample(tmp_path / "s")
    findings, src = judge_once(root, parse_as_of(truth["as_of"]), fmt="ralf")
    assert src.problems() == ()
    by = {(f.task_id, f.kind): f for f in findings}
    vals = lambda f: " | ".join(f"{e.fact}={e.value}" for e in f.evidence)  # noqa: E731
    q = ".autonomous/communications/queue.yaml"
    ev = ".autonomous/communications/events.yaml"
    hb = ".autonomous/communications/heartbeat.yaml"
    s3 = vals(by[("TASK-1769916003", "queue_stale_entry")])
    assert f"{q}:2, status at line 25" in s3 and f"{ev}:51" in s3 and "run 49" in s3
    s5 = vals(by[("TASK-1769916005", "queue_stale_entry")])
    assert f"{q}:28, status at line 51" in s5 and "tasks/completed/" in s5
    assert "in the future" in s5 and f"{ev}:71" in s5  # shown, not counted
    s6 = vals(by[("TASK-1769916006", "queue_stale_entry")])
    assert f"{q}:54, status at line 76" in s6 and f"{ev}:91" in s6
    meta = vals(by[("queue", "stale_queue_metadata")])
    assert f"{q}:84" in meta and "TASK-1769916006" in meta and f"{ev}:91" in meta
    assert f"{q}:83" in meta  # current_depth 3 counts three finished entries
    ex = by[("agent:executor", "stale_heartbeat")]
    assert f"{hb}:9" in vals(ex) and f"{hb}:15" in vals(ex) and f"{ev}:91" in vals(ex)
    assert "5m00s" in ex.summary
    fut = vals(by[("agent:executor", "future_timestamp")])
    assert f"{hb}:9" in fut
    assert ("agent:planner", "stale_heartbeat") not in by
    m7 = vals(by[("TASK-1769916007", "missing_from_queue")])
    assert "tasks/active/TASK-1769916007-implement-feature-f001.md" in m7


def test_sample_header_block_only_and_directory_is_truth(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "s")
    _, src = judge_once(root, parse_as_of(_truth()["as_of"]), fmt="ralf")
    tasks = src.all_tasks()
    t9 = tasks["TASK-1769916009"]
    assert t9.primary_file is not None
    assert t9.primary_file.header["Status"] == "pending"  # not the "planned" of line 213
    assert t9.primary_file.queue == "active"
    assert tasks["TASK-1769916003"].primary_file.queue == "completed"  # type: ignore[union-attr]
    assert tasks["TASK-1769916003"].record.queue == "pending"  # type: ignore[union-attr]
    trail = tasks["TASK-1769916006"].primary_file.trail  # type: ignore[union-attr]
    assert [e.kind for e in trail] == ["STARTED", "COMPLETED"]
    assert trail[-1].get("run_number") == "51"
    assert tasks["TASK-1769916001"].primary_file.trail[-1].get("commit_hash") == "ee59172"  # type: ignore[union-attr]
    facts = {(f.subject, f.name): f for f in src.facts()}
    assert facts[("queue", "last_completed")].value == "TASK-1769916004"
    assert facts[("queue", "latest_completion")].value == "TASK-1769916006"
    assert facts[("queue", "current_depth")].value == "3"
    assert set(src.agents()) == {"planner", "executor"}
