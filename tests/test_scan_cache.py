"""How the queue dirs are read fast: a first pass shared with a forked worker, and a warm
reconciliation that compares each dir's listing and stat keys whole and shares its stat calls
out to forked workers. Each must give what one process reading everything would, and a worker
that fails must cost only time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from qwarden.core.config import Config
from qwarden.core.engine import Engine
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid import queue_files
from qwarden.core.model import Snapshot
from qwarden.core.sources.forkmap import fork_map
from tests.builders import StateBuilder

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")


def _double(n: int) -> bytes:
    return str(n * 2).encode()


def _fails_in_child(n: int) -> bytes:
    if n == 2:
        raise RuntimeError("boom")
    return b"ok"


def _hangs_in_child(n: int) -> bytes:
    if n == 1:
        time.sleep(30)
    return b"ok"


def _share_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Share out any amount of work, as if on two cores (whatever this machine has)."""
    monkeypatch.setattr(queue_files, "PARALLEL_STAT_MIN", 1)
    monkeypatch.setattr(queue_files, "PARALLEL_READ_MIN", 1)
    monkeypatch.setattr(queue_files, "usable_cpus", lambda: 2)


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@needs_fork
def test_fork_map_returns_each_part_in_order() -> None:
    assert fork_map(_double, [1, 2, 3, 4]) == [b"2", b"4", b"6", b"8"]
    assert _no_children_left()


@needs_fork
def test_a_child_that_fails_or_hangs_gives_none_and_is_reaped() -> None:
    assert fork_map(_fails_in_child, [0, 1, 2]) == [b"ok", b"ok", None]
    t = time.monotonic()
    assert fork_map(_hangs_in_child, [0, 1], timeout=0.5) == [b"ok", None]
    assert time.monotonic() - t < 10
    assert _no_children_left()


@needs_fork
def test_an_error_in_this_process_still_reaps_the_children() -> None:
    def first_fails(n: int) -> bytes:
        if n == 0:
            raise ValueError("mine")
        return b"x"

    with pytest.raises(ValueError, match="mine"):
        fork_map(first_fails, [0, 1, 2])
    assert _no_children_left()


@pytest.fixture
def state(tmp_path: Path, utc_tz: None) -> StateBuilder:
    b = StateBuilder(tmp_path, now=datetime.now())
    for i in range(40):
        b.task(f"t{i:07d}", db_queue="incoming" if i % 2 else "done",
               file_queues=("incoming",) if i % 2 else ("done",))
    b.build()
    return b


@pytest.fixture(params=["serial", "forked"])
def stat_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "forked":
        if not hasattr(os, "fork"):
            pytest.skip("no fork() here")
        _share_everything(monkeypatch)
    return str(request.param)


def test_parallel_stat_keys_equal_serial_ones(state: StateBuilder,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    q = state.root / "shared" / "queue"
    fds = [os.open(q / d, os.O_RDONLY | os.O_DIRECTORY) for d in ("incoming", "done")]
    try:
        dirs = [(fd, sorted(os.listdir(fd)) + ["TASK-gone.md"]) for fd in fds]
        serial = queue_files.all_stat_keys(dirs)
        _share_everything(monkeypatch)
        assert queue_files.all_stat_keys(dirs) == serial
        assert [len(k) for k in serial] == [len(n) for _, n in dirs]
        assert serial[0][-1] == queue_files._STAT_FAILED
    finally:
        for fd in fds:
            os.close(fd)


def _rescan_equals_fresh(engine: Engine, root: Path) -> None:
    warm = engine.scan()
    fresh = open_engine(root, Config(), follow=False).scan()
    assert set(warm.tasks) == set(fresh.tasks)
    assert {t: tuple(f.relpath for f in warm.tasks[t].files) for t in warm.tasks} == \
        {t: tuple(f.relpath for f in fresh.tasks[t].files) for t in fresh.tasks}
    assert {t: tuple(f.trail for f in warm.tasks[t].files) for t in warm.tasks} == \
        {t: tuple(f.trail for f in fresh.tasks[t].files) for t in fresh.tasks}
    assert sorted(p.path for p in warm.problems) == sorted(p.path for p in fresh.problems)
    assert [(f.kind, f.task_id) for f in warm.findings] == \
        [(f.kind, f.task_id) for f in fresh.findings]


def test_an_unchanged_queue_is_not_read_again(state: StateBuilder, stat_mode: str) -> None:
    engine = open_engine(state.root, Config())
    engine.scan()
    assert engine.source.files_read == 40
    engine.scan()
    engine.scan()
    assert engine.source.files_read == 0
    _rescan_equals_fresh(engine, state.root)


def test_a_same_size_rewrite_in_place_is_seen_without_the_watcher(
        state: StateBuilder, stat_mode: str) -> None:
    engine = open_engine(state.root, Config())
    engine.scan()
    engine.scan()  # the dirs' listings and keys are now remembered
    path = state.root / "shared" / "queue" / "done" / "TASK-t0000000.md"
    text = path.read_text()
    path.write_text(text.replace("A task", "B task"))  # same size, same inode
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    snap = engine.scan()
    assert engine.source.files_read == 1
    assert snap.tasks["t0000000"].primary_file.title == "B task"
    _rescan_equals_fresh(engine, state.root)


def test_moves_adds_and_removals_are_seen(state: StateBuilder, stat_mode: str) -> None:
    engine = open_engine(state.root, Config())
    engine.scan()
    engine.scan()
    q = state.root / "shared" / "queue"
    os.rename(q / "incoming" / "TASK-t0000001.md", q / "done" / "TASK-t0000001.md")
    (q / "done" / "TASK-t0000002.md").unlink()
    (q / "incoming" / "TASK-new00001.md").write_text("# [TASK-new00001] New\n\nROLE: x\n")
    snap = engine.scan()
    assert snap.tasks["t0000001"].primary_file.queue == "done"
    assert not snap.tasks["t0000002"].files
    assert "new00001" in snap.tasks
    _rescan_equals_fresh(engine, state.root)


def test_a_file_the_watcher_read_then_missed_going_is_dropped(
        state: StateBuilder, stat_mode: str) -> None:
    """The watcher reads a new file; its removal goes unnoticed. The dir's listing is then
    what the last full pass saw, but the reconciliation must still drop the file."""
    engine = open_engine(state.root, Config())
    engine.scan()
    engine.scan()
    q = state.root / "shared" / "queue"
    path = q / "incoming" / "TASK-brief001.md"
    path.write_text("# [TASK-brief001] Brief\n\nROLE: x\n")
    engine.apply_paths({"shared/queue/incoming/TASK-brief001.md"})
    assert "shared/queue/incoming/TASK-brief001.md" in engine.source.files
    path.unlink()  # no event handled for this one
    snap = engine.scan()
    assert "shared/queue/incoming/TASK-brief001.md" not in engine.source.files
    assert not snap.tasks.get("brief001") or not snap.tasks["brief001"].files
    _rescan_equals_fresh(engine, state.root)


def test_what_cannot_be_read_is_reported_on_every_pass(state: StateBuilder,
                                                       stat_mode: str) -> None:
    q = state.root / "shared" / "queue"
    (q / "incoming" / "TASK-adir0001.md").mkdir()
    engine = open_engine(state.root, Config())
    for _ in range(3):
        snap = engine.scan()
        assert any(p.path == "shared/queue/incoming/TASK-adir0001.md" for p in snap.problems)


# ---------------------------------------------------------------- a first pass shared out
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, datetime]]:
    from tests.builders import generated_utc_state

    yield from generated_utc_state(tmp_path_factory, "shared-scan", 1500, seed=7)


def _view(snap: Snapshot) -> tuple[object, ...]:
    return ({t: tuple((f.relpath, f.title, tuple(f.header.items()), f.trail, f.errors,
                       f.parseable, f.is_stub, f.problem, f.trail_complete)
                      for f in task.files) for t, task in snap.tasks.items()},
            sorted((p.path, p.message) for p in snap.problems),
            [(f.kind, f.task_id, f.summary, f.evidence) for f in snap.findings],
            dict(snap.verdicts))


@needs_fork
@pytest.mark.parametrize("follow", [True, False])
def test_a_first_pass_shared_with_a_worker_reads_what_one_process_reads(
        generated: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch,
        follow: bool) -> None:
    root, as_of = generated
    expected = _view(open_engine(root, Config(), as_of=as_of, follow=follow).scan())
    _share_everything(monkeypatch)
    engine = open_engine(root, Config(), as_of=as_of, follow=follow)
    started = engine.source.start_scan()
    assert started is not None and started.worker is not None
    started.close()  # given up: nothing left running, nothing read
    assert _no_children_left()
    engine = open_engine(root, Config(), as_of=as_of, follow=follow)
    snap = engine.scan()
    assert _no_children_left()
    assert _view(snap) == expected
    assert engine.source.files_read >= 1500
    if follow:  # and the dirs are remembered whole: an unchanged rescan reads nothing
        engine.scan()
        assert engine.source.files_read == 0
        assert _view(engine.snapshot) == expected  # type: ignore[arg-type]


@needs_fork
def test_a_failed_worker_s_share_is_read_here(generated: tuple[Path, datetime],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root, as_of = generated
    expected = _view(open_engine(root, Config(), as_of=as_of).scan())
    _share_everything(monkeypatch)

    def dies(self: queue_files.QueueFiles, started: queue_files.ColdStart) -> bytes:
        os._exit(3)

    monkeypatch.setattr(queue_files.QueueFiles, "_worker_share", dies)
    engine = open_engine(root, Config(), as_of=as_of)
    assert _view(engine.scan()) == expected
    assert _no_children_left()
    engine.scan()
    assert engine.source.files_read == 0


def test_a_file_gone_between_listing_and_stat_is_no_problem(
        state: StateBuilder, stat_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents move files all the time: one listed and gone before its stat moved on (the
    watcher sees where to); it is not a read problem to show the operator."""
    engine = open_engine(state.root, Config())
    engine.scan()
    real = os.listdir

    def listdir_with_a_ghost(fd: int) -> list[str]:
        return [*real(fd), "TASK-ghost001.md"]

    monkeypatch.setattr(queue_files.os, "listdir", listdir_with_a_ghost)
    snap = engine.scan()
    assert not snap.problems
    assert "ghost001" not in snap.tasks
    monkeypatch.setattr(queue_files.os, "listdir", real)
    _rescan_equals_fresh(engine, state.root)


@needs_fork
def test_the_worker_s_progress_shows_while_the_db_is_read(
        generated: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch) -> None:
    root, as_of = generated
    _share_everything(monkeypatch)
    engine = open_engine(root, Config(), as_of=as_of)
    seen: list[str] = []
    real = engine.source.read_records

    def slow_db(*args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 20
        while engine.source.files_read < 256 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(engine.scan_progress())
        return real(*args, **kwargs)

    engine.source.read_records = slow_db  # type: ignore[method-assign]
    engine.scan()
    assert seen and seen[0].startswith("reading state.db; task files: ")
    assert int(seen[0].rsplit(": ", 1)[1].split()[0].replace(",", "")) >= 256
    assert engine.scan_progress() == ""


@needs_fork
def test_a_db_that_cannot_be_read_leaves_no_worker_behind(
        tmp_path: Path, utc_tz: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwarden.core.sources.errors import SourceError

    b = StateBuilder(tmp_path, now=datetime.now())
    for i in range(30):
        b.task(f"w{i:07d}", db_queue="incoming")
    b.build()
    (b.root / "state.db").write_bytes(b"not a database at all" * 100)
    _share_everything(monkeypatch)
    engine = open_engine(b.root, Config())
    with pytest.raises(SourceError):
        engine.scan()
    assert _no_children_left()


def test_a_file_the_watcher_read_is_looked_at_again_even_if_its_stat_goes_back(
        state: StateBuilder, stat_mode: str) -> None:
    """After the watcher has read a change, the dir is not as its last full pass left it,
    even when the file's stat later returns to what that pass saw (same size and inode, the
    old mtime put back): the next pass must compare the file with what was read last."""
    engine = open_engine(state.root, Config())
    engine.scan()
    engine.scan()  # the dirs' listings and keys are now remembered
    rel = "shared/queue/done/TASK-t0000000.md"
    path = state.root / rel
    first = os.stat(path)
    text = path.read_text()
    path.write_text(text.replace("A task", "B task"))
    os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns + 5_000_000))
    engine.apply_paths({rel})
    assert engine.source.files[rel].title == "B task"
    path.write_text(text.replace("A task", "C task"))
    os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns))  # the first pass's stat again
    snap = engine.scan()
    assert snap.tasks["t0000000"].primary_file.title == "C task"
