"""The coordination readers: bad input is a finding or a read problem with its position,
never a traceback (hypothesis), and a broken queue keeps every entry that still decodes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwarden.core.formats.coordination.actions import repaired
from qwarden.core.formats.coordination.parse import (
    decode,
    parse_comms,
    parse_queue,
    parse_workers,
    salvage,
)
from qwarden.core.formats.coordination.source import CoordSource, read_state
from tests.coord_util import entry, judged, now, worker, write_state


def _queue(n: int) -> bytes:
    return json.dumps([entry(1_700_000_000_000 + i) for i in range(n)], indent=2).encode()


def test_invalid_entries_are_skipped_and_listed() -> None:
    items = [entry(1), {"description": "no id", "status": "pending"}, {"id": 2}, "junk",
             entry("task-x"), entry(1), {"id": True, "status": "pending"}]
    qp = parse_queue(json.dumps(items).encode())
    assert qp.ok
    assert [e.tid for e in qp.entries] == ["1", "task-x"]
    assert [(b.index, b.reason.split(" ")[0]) for b in qp.invalid] == \
        [(1, "no"), (2, "no"), (3, "not"), (6, "unusable")]
    assert qp.duplicates == {"1": [0, 5]}


def test_unparseable_json_reports_line_and_column() -> None:
    data = _queue(3)
    torn = data[: len(data) // 2]
    qp = parse_queue(torn)
    assert qp.error is not None
    assert qp.error.line == torn.count(b"\n") + 1 or qp.error.line >= 2
    assert qp.error.column >= 1
    # the entries before the tear are salvaged
    assert [e.tid for e in qp.entries] == ["1700000000000"]


def test_salvage_after_interleaved_writes() -> None:
    a = _queue(4)
    b = json.dumps([entry(9)], indent=2).encode()
    # a shorter write over a longer file: the new array, then the old file's tail
    mixed = b + a[len(b):]
    qp = parse_queue(mixed)
    assert qp.error is not None
    ids = [e.tid for e in qp.entries]
    assert "9" in ids
    assert len(set(ids)) == len(ids)


def test_repair_keeps_every_valid_entry() -> None:
    good = [entry(1_700_000_000_000 + i) for i in range(5)]
    items: list = [*good[:2], {"status": "pending"}, *good[2:], 42]
    new, dropped = repaired(json.dumps(items, indent=2).encode())
    assert new is not None
    assert json.loads(new) == good
    assert len(dropped) == 2
    # a torn file: every complete entry survives
    data = json.dumps(good, indent=2).encode()
    new, dropped = repaired(data[:-30])
    assert new is not None
    assert json.loads(new) == good[:4]
    assert "do not parse" in dropped[0]
    assert repaired(data) == (None, [])


def test_workers_map_and_flat() -> None:
    m = parse_workers(json.dumps({"w1": worker(["a"], 5), "w2": worker([], 5)}).encode())
    assert m.shape == "map" and set(m.workers) == {"w1", "w2"}
    f = parse_workers(json.dumps({"worker_id": "solo", **worker(["a"], 5)}).encode())
    assert f.shape == "flat" and list(f.workers) == ["solo"]
    f2 = parse_workers(json.dumps(worker(["a"], 5)).encode())
    assert f2.shape == "flat" and list(f2.workers) == ["worker"]


def test_comms_both_shapes_and_torn_lines() -> None:
    data = (b'{"timestamp": "2026-01-01T10:00:00", "agent": "w1", "message": "Claimed task '
            b'1731159000123"}\n{"from": "w2", "to": "coordinator", "message": "task-abc done",'
            b' "timestamp": "2026-01-01T10:01:00"}\n{"torn": \n\n[1,2]\n')
    cp = parse_comms(data)
    assert [(ln.agent, ln.shape, ln.ids) for ln in cp.lines] == [
        ("w1", "agent", ("1731159000123",)), ("w2", "from", ("task-abc",))]
    assert cp.lines[0].claims and not cp.lines[1].claims
    assert cp.bad == [3, 5]


def test_escapes_in_text_are_removed() -> None:
    data = json.dumps([{"id": 1, "status": "pending", "description": "x\x1b]52;c;AAAA\x07y"}])
    qp = parse_queue(data.encode())
    assert qp.entries
    cp = parse_comms(json.dumps({"agent": "w\x1b[31m1", "message": "hi\x1b[2J"}).encode())
    assert cp.lines[0].agent == "w1" and cp.lines[0].message == "hi"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_readers_never_raise(data: bytes) -> None:
    parse_queue(data)
    parse_workers(data)
    parse_comms(data)
    list(salvage(data))
    decode(data)
    repaired(data)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "status", "metadata", "claimed_by", "claimed_at", "result",
                         "error", "context_files", "instruction_file", "capabilities",
                         "last_heartbeat", "x"]), c, max_size=6),
    max_leaves=25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(queue=st.lists(_JSONISH, max_size=8), workers=_JSONISH, cut=st.integers(0, 400))
def test_fuzz_states_judge_without_traceback(tmp_path_factory, queue, workers, cut) -> None:
    root: Path = tmp_path_factory.mktemp("fz")
    qdata = json.dumps(queue, indent=2, allow_nan=True).encode()
    if cut and cut < len(qdata):
        qdata = qdata[:cut]  # sometimes torn
    (root / "task-queue.json").write_bytes(qdata)
    (root / "worker-status.json").write_text(json.dumps(workers, allow_nan=True))
    (root / "tasks").mkdir()
    judged(root, now())
    src = CoordSource(root)
    src.scan()
    for t in src.all_tasks().values():
        src.full_task(t)
        src.history(t.task_id)


def test_a_corrupt_queue_keeps_the_last_good_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_state(root, [entry(1), entry(2, "in_progress", "w1")], {"w1": worker(["a"], 5)})
    src = CoordSource(root)
    src.scan()
    assert set(src.all_tasks()) == {"1", "2"}
    good = (root / "task-queue.json").read_bytes()
    (root / "task-queue.json").write_bytes(good[:-40])
    d = src.rescan()
    assert set(src.all_tasks()) == {"1", "2"}  # the last good read stays on show
    assert src.state is not None and src.state.queue_stale
    assert d.facts
    assert any("not valid JSON at line" in p.message for p in src.problems())
    from qwarden.core.formats import judge_once
    from qwarden.core.formats.coordination.rules import subject_findings
    f = subject_findings(src.view(now()))
    assert [x.kind for x in f] == ["corrupt_queue_file"]
    assert "line" in f[0].summary and "column" in f[0].summary
    # a fresh reader has no last good read: it shows what it salvaged
    findings, fresh = judge_once(root, now(), fmt="coordination")
    assert set(fresh.all_tasks()) == {"1"}
    assert any(x.kind == "corrupt_queue_file" and x.task_id == "queue" for x in findings)
    (root / "task-queue.json").write_bytes(good)
    src.rescan()
    assert src.state is not None and not src.state.queue_stale
    assert src.problems() == ()


def test_source_follows_only_its_files(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_state(root, [entry(1)], {"w1": worker(["a"], 5)})
    src = CoordSource(root)
    src.scan()
    r = src.root
    assert not src.on_paths({str(r / "warden" / "journal.db"), str(r / "task-queue.json.lock"),
                             str(r / ".task-queue.json.qw1.tmp")})
    q = json.loads((root / "task-queue.json").read_text())
    q[0]["status"] = "failed"
    (root / "task-queue.json").write_text(json.dumps(q))
    d = src.on_paths({str(r / "task-queue.json")})
    assert d.tasks == {"1"}
    assert src.task("1").record.queue == "failed"  # type: ignore[union-attr]
    # a change to an entry field the Task does not carry is still a change
    q[0]["error"] = "boom"
    (root / "task-queue.json").write_text(json.dumps(q))
    assert src.on_paths({str(r / "task-queue.json")}).tasks == {"1"}


def test_fifo_and_oversized_files_are_problems_not_hangs(tmp_path: Path) -> None:
    import os

    import pytest

    from qwarden.core.config import Config
    from qwarden.core.sources.errors import SourceError

    root = tmp_path / "c"
    write_state(root, [entry(1)], {"w1": worker(["a"], 5)})
    os.unlink(root / "worker-status.json")
    os.mkfifo(root / "worker-status.json")
    src = CoordSource(root)
    src.scan()
    assert any("FIFO" in p.message for p in src.problems())
    os.unlink(root / "task-queue.json")
    os.mkfifo(root / "task-queue.json")
    with pytest.raises(SourceError, match="FIFO"):
        read_state(src.root, Config().coordination)
    with pytest.raises(SourceError):  # (not even recognised as a queue: no regular file)
        CoordSource(root)
    big = tmp_path / "b"
    write_state(big, [entry(i) for i in range(50)], {})
    cfg = Config.model_validate({"coordination": {"max_queue_bytes": 4096}})
    with pytest.raises(SourceError, match="more than"):
        CoordSource(big, cfg).scan()
