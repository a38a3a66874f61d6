"""`watch --headless`: one line per change naming the task, the kind and what changed; the tick
line; `--json` (each line validated against core.watch's models); what a tick is (tick 1 the
initial scan, printed at once; `--ticks N` = N fixer passes, issue 8 defect 8)."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import IO

import msgspec.structs
import pytest

from qwarden.core.formats import open_engine
from qwarden.core.model import Severity
from qwarden.core.watch import (
    AutofixEvent,
    ChangeTracker,
    FindingEvent,
    LaneEvent,
    TickEvent,
    WatchEvent,
    change_line,
)
from tests.builders import StateBuilder

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "Fix \x1b]52;c;SGVsbG8=\x07login\x1b[2J [bold]page[/bold]"


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def live_state(tmp_path: Path) -> StateBuilder:
    """A missing file (critical), a corrupt file (critical), an orphan (warning, with a
    hostile title) and a healthy task, judged live."""
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("0ab0ab01", db_queue="incoming", file_queues=())
    b.task("0ab0ab02", db_queue=None, raw={"incoming": b"\x00\x01 not a task"})
    b.task("0ab0ab03", db_queue=None, title=HOSTILE)
    b.task("0ab0ab04", db_queue="incoming", title="Fine")
    b.build()
    return b


def orphan_text(tid: str, title: str) -> str:
    return f"# [TASK-{tid}] {title}\n\nROLE: implement\nPRIORITY: P2\n\n## Context\nx\n"


# ------------------------------------------------------------------ what a change is

def test_changes_between_snapshots_name_the_task_the_kind_and_the_change(
        tmp_path: Path) -> None:
    b = live_state(tmp_path)
    engine = open_engine(b.root)
    tracker = ChangeTracker()
    first = tracker.update(engine.scan())
    assert sorted((c.change, c.task_id, c.finding.kind) for c in first if c.finding) == [
        ("present", "0ab0ab01", "missing_file"), ("present", "0ab0ab02", "corrupt_task"),
        ("present", "0ab0ab03", "orphan_file")]
    missing = next(c for c in first if c.task_id == "0ab0ab01")
    orphan = next(c for c in first if c.task_id == "0ab0ab03")
    assert missing.new_critical and not orphan.new_critical
    assert orphan.title == "Fix login [bold]page[/bold]"  # escapes gone, markup inert

    q = b.root / "shared" / "queue"
    (q / "incoming" / "TASK-0ab0ab02.md").unlink()  # the corrupt file goes
    (q / "incoming" / "TASK-0ab0ab05.md").write_text(orphan_text("0ab0ab05", "New one"))
    (q / "incoming" / "TASK-0ab0ab01.md").write_text(orphan_text("0ab0ab01", "Back"))
    dirty = engine.apply_paths({"shared/queue/incoming/TASK-0ab0ab02.md",
                                       "shared/queue/incoming/TASK-0ab0ab05.md",
                                       "shared/queue/incoming/TASK-0ab0ab01.md"})
    snap = engine.rejudge(dirty)
    changes = tracker.update(snap)
    got = {(c.change, c.task_id, c.finding.kind if c.finding else (c.previous, c.lane))
           for c in changes}
    assert got == {
        ("lane", "0ab0ab02", ("incoming", None)), ("cleared", "0ab0ab02", "corrupt_task"),
        ("lane", "0ab0ab05", (None, "incoming")), ("appeared", "0ab0ab05", "orphan_file"),
        ("cleared", "0ab0ab01", "missing_file")}
    lines = {change_line(c, snap.as_of).split(" ", 1)[1] for c in changes}
    assert 'lane TASK-0ab0ab02 incoming -> (gone)' in lines
    assert 'lane TASK-0ab0ab05 (new) -> incoming "New one"' in lines
    assert ('appeared TASK-0ab0ab05 orphan_file warning in incoming "New one": '
            'shared/queue/incoming/TASK-0ab0ab05.md has no DB row') in lines
    assert 'cleared TASK-0ab0ab01 missing_file critical in incoming "Back"' in lines
    assert tracker.update(snap) == []  # the same snapshot again: nothing new

    # A snapshot the watcher did not see (a generation gap): every task is compared, and the
    # result is the same as seen step by step.
    gap = ChangeTracker()
    gap.update(dataclasses.replace(tracker.previous, generation=snap.generation - 5))  # type: ignore[arg-type]
    (q / "incoming" / "TASK-0ab0ab05.md").unlink()
    stepwise = tracker.update(engine.rejudge(
        engine.apply_paths({"shared/queue/incoming/TASK-0ab0ab05.md"})))
    assert {(c.change, c.task_id) for c in stepwise} == {("lane", "0ab0ab05"),
                                                          ("cleared", "0ab0ab05")}
    assert gap.update(engine.snapshot) == stepwise  # type: ignore[arg-type]


def test_a_severity_change_is_one_line_and_a_new_critical(tmp_path: Path) -> None:
    b = live_state(tmp_path)
    engine = open_engine(b.root)
    tracker = ChangeTracker()
    snap = engine.scan()
    tracker.update(snap)
    orphan = snap.findings_for("0ab0ab03")[0]
    worse = msgspec.structs.replace(orphan, severity=Severity.CRITICAL)
    by_task = {**snap.by_task, "0ab0ab03": (worse,)}  # type: ignore[dict-item]
    later = dataclasses.replace(snap, generation=snap.generation + 1, by_task=by_task,
                                changed=frozenset({"0ab0ab03"}))
    [ch] = tracker.update(later)
    assert (ch.change, ch.previous, ch.new_critical) == ("severity", "warning", True)
    assert change_line(ch, later.as_of).split(" ", 1)[1].startswith(
        'severity TASK-0ab0ab03 orphan_file warning -> critical in incoming "Fix login')


# ------------------------------------------------------------------ the command

def _watch(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qwarden.core.cli", "watch", "--headless",
                             "--root", str(root), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "TZ": "UTC"})


class Lines:
    """A subprocess's stdout read line by line with a deadline (a hang fails, not blocks)."""

    def __init__(self, stream: IO[str]) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self.q.put(line.rstrip("\n"))
            self.q.put(None)
        threading.Thread(target=pump, daemon=True).start()

    def until(self, needle: str, timeout: float = 60) -> list[str]:
        got: list[str] = []
        while True:
            line = self.q.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"ended before {needle!r}: {self.seen}")
            self.seen.append(line)
            got.append(line)
            if needle in line:
                return got

    def rest(self, timeout: float = 60) -> list[str]:
        got: list[str] = []
        while (line := self.q.get(timeout=timeout)) is not None:
            self.seen.append(line)
            got.append(line)
        return got


def test_ticks_2_runs_exactly_two_fixer_passes(tmp_path: Path) -> None:
    """Issue 8 defect 8: `--ticks 2` ran three fixer passes (the initial one, then one per
    poll for two polls)."""
    root = live_state(tmp_path).root
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                           "watch", "--headless", "--root",
                           str(root), "--interval", "0.3", "--ticks", "2", "--fix",
                           "observe"], capture_output=True, text=True, cwd=REPO, timeout=90,
                          env={**os.environ, "TZ": "UTC"})
    assert proc.returncode == 2, proc.stderr  # critical findings
    lines = proc.stdout.splitlines()
    passes = [i for i, ln in enumerate(lines) if " autofix observe: " in ln]
    ticks = [i for i, ln in enumerate(lines) if " tick " in ln]
    assert len(passes) == 2 and len(ticks) == 2, proc.stdout
    assert " tick 1/2 " in lines[ticks[0]] and " next tick " in lines[ticks[0]]
    assert " tick 2/2 " in lines[ticks[1]] and lines[ticks[1]].endswith(" last tick")
    assert ticks[0] < passes[0] < ticks[1] < passes[1]  # each tick, then its fixer pass
    history = (root / "warden" / "metrics-history.jsonl").read_text().splitlines()
    assert len(history) == 2


def test_the_first_tick_is_the_initial_scan_printed_at_once(tmp_path: Path) -> None:
    """With the default 300 s interval, `--ticks 3` prints its first tick at once (it used to
    sit for three intervals before its first line); SIGTERM then ends it cleanly."""
    root = live_state(tmp_path).root
    proc = _watch(root, "--ticks", "3")
    try:
        assert proc.stdout is not None
        out = Lines(proc.stdout)
        got = out.until(" tick 1/3 ", timeout=60)
        assert any(" present TASK-0ab0ab02 corrupt_task critical" in ln for ln in got)
        assert " next tick " in got[-1] and "critical=2 warning=1" in got[-1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 2  # the verdict of the last tick, not a kill
        assert not any(" tick 2/3 " in ln for ln in out.rest())
    finally:
        if proc.poll() is None:
            proc.kill()
    proc1 = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                            "watch", "--headless", "--root",
                            str(root), "--ticks", "1"], capture_output=True, text=True,
                           cwd=REPO, timeout=60, env={**os.environ, "TZ": "UTC"})
    assert proc1.returncode == 2 and proc1.stdout.splitlines()[-1].endswith(" last tick")


def _run_with_a_change(tmp_path: Path, *args: str) -> tuple[list[str], str, Path]:
    """Watch; after tick 1, a new orphan file appears; two ticks in all."""
    root = live_state(tmp_path).root
    proc = _watch(root, "--interval", "2", "--ticks", "2", "--fix", "observe", *args)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out = Lines(proc.stdout)
        out.until('"tick": 1' if "--json" in args else " tick 1/2 ")
        (root / "shared" / "queue" / "incoming" / "TASK-0ab0ab05.md").write_text(
            orphan_text("0ab0ab05", "New \x1b[31mred\x1b[0m one"))
        out.rest()
        assert proc.wait(timeout=60) == 2
        return out.seen, proc.stderr.read(), root
    finally:
        if proc.poll() is None:
            proc.kill()


def test_text_lines(tmp_path: Path) -> None:
    lines, err, _ = _run_with_a_change(tmp_path)
    assert not any("\x1b" in ln for ln in lines)
    present = [ln for ln in lines if " present " in ln]
    assert len(present) == 3
    assert ' present TASK-0ab0ab01 missing_file critical in incoming: DB row (incoming) but ' \
        'no task file in any queue directory' in "\n".join(present)
    assert ' present TASK-0ab0ab03 orphan_file warning in incoming "Fix login [bold]page' \
        '[/bold]": shared/queue/incoming/TASK-0ab0ab03.md has no DB row' in "\n".join(present)
    tick2 = next(i for i, ln in enumerate(lines) if " tick 2/2 " in ln)
    new = [ln for ln in lines[:tick2] if "TASK-0ab0ab05" in ln]
    assert [ln.split(" ", 1)[1] for ln in new] == [
        'lane TASK-0ab0ab05 (new) -> incoming "New red one"',
        'appeared TASK-0ab0ab05 orphan_file warning in incoming "New red one": '
        'shared/queue/incoming/TASK-0ab0ab05.md has no DB row']
    for ln in lines:
        assert ln[:20].endswith("Z") and datetime.fromisoformat(ln[:19]), ln  # TIME first
    assert "Traceback" not in err


def test_json_lines_follow_the_documented_models(tmp_path: Path) -> None:
    lines, err, _ = _run_with_a_change(tmp_path, "--json")
    events = [WatchEvent.validate_python(json.loads(ln)) for ln in lines]  # every line
    assert not any("\\u001b" in ln or "\x1b" in ln for ln in lines)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["FindingEvent"] * 3
    assert kinds.count("TickEvent") == 2 and kinds.count("AutofixEvent") == 2
    assert kinds[3:5] == ["TickEvent", "AutofixEvent"] and kinds[-2:] == ["TickEvent",
                                                                         "AutofixEvent"]
    first = next(e for e in events if isinstance(e, FindingEvent) and e.task_id == "0ab0ab01")
    assert (first.change, first.kind, first.severity, first.lane) == (
        "present", "missing_file", "critical", "incoming")
    assert first.evidence and first.recommended_action and first.previous_severity is None
    orphan = next(e for e in events if isinstance(e, FindingEvent) and e.task_id == "0ab0ab03")
    assert orphan.title == "Fix login [bold]page[/bold]" and orphan.severity == "warning"
    lane = next(e for e in events if isinstance(e, LaneEvent))
    assert (lane.task_id, lane.from_, lane.to, lane.title) == ("0ab0ab05", None, "incoming",
                                                               "New red one")
    appeared = next(e for e in events if isinstance(e, FindingEvent) and e.change == "appeared")
    assert (appeared.task_id, appeared.kind) == ("0ab0ab05", "orphan_file")
    t1, t2 = (e for e in events if isinstance(e, TickEvent))
    assert (t1.tick, t1.ticks, t2.tick) == (1, 2, 2)
    assert t1.next_tick_at is not None and t2.next_tick_at is None
    assert t1.findings_by_kind == {"corrupt_task": 1, "missing_file": 1, "orphan_file": 1}
    assert t2.findings_by_kind["orphan_file"] == 2 and t2.exit_code == 2
    fix = next(e for e in events if isinstance(e, AutofixEvent))
    assert fix.mode == "observe" and {w["finding"] for w in fix.would_fix} >= {"orphan_file"}
    assert json.loads(lines[0])["event"] == "finding"  # `event` says which model
    assert "Traceback" not in err


def test_unreadable_paths_are_said_once_on_stderr(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("0ab0ab04", db_queue="incoming", title="Fine")
    b.agent("impl-1", running=False)
    root = b.build()
    (root / "agents" / "impl-1" / "state.json").write_text("{not json\x1b]0;title\x07")
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                           "watch", "--headless", "--root",
                           str(root), "--ticks", "2", "--interval", "0.3"],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "state.json" in ln]
    assert len(said) == 1 and "\x1b" not in proc.stderr, proc.stderr
    assert all(" problems=1 " in ln for ln in proc.stdout.splitlines() if " tick " in ln)
