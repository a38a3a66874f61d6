"""Hostile files and databases (issue 9): no hang, no crash, no write outside the root, and
read-only means read-only. One test per defect the audit found; each fails on the old code."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qwarden.core.cli import main
from qwarden.core.config import load_config
from qwarden.core.formats import open_engine
from tests.builders import StateBuilder
from tests.hostile import crashed_writer, deadline, memory_cap, tree
from tests.test_actions_support import IDS, build_state

REPO = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-22T22:10:00"
ENV = {"PATH": "/usr/bin:/bin", "TZ": "UTC", "HOME": "/nonexistent"}


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def small(tmp_path: Path) -> Path:
    """A claimed task with its agent (state, status, heartbeat), a failed one, a done one."""
    b = StateBuilder(tmp_path)
    b.task("aaaa0001", db_queue="claimed", file_queues=("claimed",),
           db={"claimed_by": "impl-1", "claimed_at": 600})
    b.task("aaaa0002", db_queue="failed", file_queues=("failed",))
    b.task("aaaa0003", db_queue="done", file_queues=("done",), db={"commits_count": 2})
    b.agent("impl-1", pid=os.getpid(), heartbeat_age=30, status=("aaaa0001", 30),
            current_task="aaaa0001")
    return b.build()


def report(root: Path, *extra: str, as_of: str | None = AS_OF) -> tuple[int, str, str]:
    """``qwarden report --json`` in-process, under a deadline: (exit, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = ["report", "--json", "--root", str(root), *extra]
    if as_of:
        argv += ["--as-of", as_of]
    with deadline(20), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def cli(*args: str, timeout: float = 30, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwarden.core.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env or ENV, timeout=timeout)


# ------------------------------------------------------------------ 1. FIFOs never hang

@pytest.mark.parametrize("name", ["state.json", "status.json", "current_task.json",
                                  "heartbeat"])
def test_fifo_in_agent_dir_is_a_read_problem(tmp_path: Path, name: str) -> None:
    root = small(tmp_path)
    p = root / "agents" / "impl-1" / name
    p.unlink(missing_ok=True)
    os.mkfifo(p)
    before = tree(root)
    code, out, err = report(root, as_of=None)  # live: pids checked too
    assert code in (0, 1, 2)
    assert json.loads(out)["tasks"]
    assert f"agents/impl-1/{name}: cannot read: a FIFO, not a regular file" in err
    assert tree(root) == before


def test_fifo_log_does_not_hang_the_console_tail(tmp_path: Path) -> None:
    root = small(tmp_path)
    os.mkfifo(root / "agents" / "impl-1" / "stdout.log")
    with deadline(10):
        assert open_engine(root, follow=False).log_tail("impl-1") == ""


def test_fifo_appearing_while_watch_headless_runs(tmp_path: Path) -> None:
    root = small(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "qwarden.core.cli", "watch", "--headless",
                             "--root", str(root), "--interval", "0.5", "--ticks", "4"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the first snapshot is out: now the FIFOs appear
        agent = root / "agents" / "impl-1"
        for name in ("state.json", "heartbeat"):
            (agent / name).unlink()
            os.mkfifo(agent / name)
        os.mkfifo(root / "shared" / "queue" / "incoming" / "TASK-bbbb0001.md")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode in (0, 1, 2), err
    assert "Traceback" not in err
    assert len(out.splitlines()) >= 1  # it went on polling and stopped after its ticks


ACTIONS = [["retry"], ["release"], ["sync"], ["accept"], ["cancel", "--note", "x"],
           ["clear-error"], ["quarantine", "--force"], ["register"], ["escalate"],
           ["mark-read"], ["repair-path"], ["split", "--subtask", "a | b | c"]]


@pytest.mark.parametrize("action", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_fifo_task_file_under_every_intervention(tmp_path: Path, action: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_state(tmp_path)
    tid = IDS["failed"]
    os.mkfifo(root / "shared" / "queue" / "incoming" / f"TASK-{tid}.md")
    before = tree(root)
    with deadline(20):
        code = main([*action, tid, "--yes", "--force", "--root", str(root)])
    assert code == 3
    assert (f"shared/queue/incoming/TASK-{tid}.md: cannot read: a FIFO, not a regular file"
            in capsys.readouterr().err)
    assert tree(root) == before


def test_fifo_and_device_config_are_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = small(tmp_path)
    cfg = root.parent / "qwarden.toml"
    os.mkfifo(cfg)
    with deadline(10):
        assert main(["report", "--root", str(root), "--as-of", AS_OF]) == 3
    assert "qwarden.toml: cannot read config: a FIFO, not a regular file" in \
        capsys.readouterr().err
    cfg.unlink()
    cfg.symlink_to("/dev/zero")
    with deadline(10):
        assert main(["report", "--root", str(root), "--as-of", AS_OF]) == 3
    assert "a character device, not a regular file" in capsys.readouterr().err


# ------------------------------------------------------------------ 2. bounded reads

@pytest.mark.parametrize("kind", ["dev-zero", "sparse"])
def test_actions_never_read_a_task_file_without_a_bound(tmp_path: Path, kind: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    root, _ = build_state(tmp_path)
    tid = IDS["failed"]
    p = root / "shared" / "queue" / "failed" / f"TASK-{tid}.md"
    p.unlink()
    if kind == "dev-zero":
        p.symlink_to("/dev/zero")
    else:  # inside the root, 64 MiB of holes: more than an action will read whole
        with open(p, "wb") as fh:
            fh.truncate(64 * 1024 * 1024)
    before = tree(root)
    with deadline(20), memory_cap():
        code = main(["retry", tid, "--yes", "--force", "--root", str(root)])
    err = capsys.readouterr().err
    if kind == "dev-zero":  # a link out of the root is not followed, as by the report
        assert code == 1 and "is a symlink to /dev/zero, outside the root" in err
    else:
        assert code == 3 and "67,108,864 bytes, more than the 16,777,216 qwarden reads" in err
    assert tree(root) == before


# ------------------------------------------------------------------ 3. out-of-range values

def _json_write(path: Path, **values: str) -> None:
    """Set keys of an agent's JSON file to raw JSON tokens (Infinity, 1e400...)."""
    d = json.loads(path.read_text())
    for k in values:
        d[k] = f"@@{k}@@"
    text = json.dumps(d)
    for k, raw in values.items():
        text = text.replace(f'"@@{k}@@"', raw)
    path.write_text(text)


@pytest.mark.parametrize(("file", "key", "raw"), [
    ("state.json", "pid", "Infinity"), ("state.json", "pid", "1e300"),
    ("state.json", "pid", "2147483648"), ("state.json", "consecutive_failures", "1e400"),
    ("state.json", "last_exit_code", "-Infinity"),
    ("status.json", "progress_percent", "Infinity"), ("status.json", "progress_percent", "NaN"),
])
def test_out_of_range_agent_numbers_are_unreadable_values(tmp_path: Path, file: str, key: str,
                                                          raw: str) -> None:
    root = small(tmp_path)
    _json_write(root / "agents" / "impl-1" / file, **{key: raw})
    code, out, err = report(root, as_of=None)  # live, so the pid is checked too
    assert code in (0, 1, 2), err
    problems = {p["path"]: p["message"] for p in json.loads(out)["problems"]}
    msg = problems[f"agents/impl-1/{file}: {key}"]
    assert msg.startswith("unreadable value") and "read as missing" in msg


@pytest.mark.parametrize(("col", "value"), [
    ("commits_count", "9e999"), ("attempt_count", "9e999"), ("rejection_count", "-9e999"),
    ("commits_count", "-1"), ("attempt_count", "'lots'"),
])
def test_out_of_range_db_counts_are_unreadable_values(tmp_path: Path, col: str,
                                                      value: str) -> None:
    root = small(tmp_path)
    conn = sqlite3.connect(root / "state.db")
    conn.execute(f"UPDATE tasks SET {col} = {value} WHERE id = 'aaaa0003'")
    conn.commit()
    conn.close()
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    problems = {p["path"]: p["message"] for p in json.loads(out)["problems"]}
    assert problems[f"state.db tasks[aaaa0003].{col}"].startswith("unreadable value")
    # and when the row is put right, the problem goes with it (the live engine)
    eng = open_engine(root, as_of=None)
    eng.scan()
    conn = sqlite3.connect(root / "state.db")
    conn.execute(f"UPDATE tasks SET {col} = 1 WHERE id = 'aaaa0003'")
    conn.commit()
    conn.close()
    assert eng.apply_marker() == {"aaaa0003"}
    assert not eng.source.cell_problem_list()


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                   "0001-01-01 00:00:00+14:00"])
def test_dates_out_of_range_are_missing_evidence(tmp_path: Path, stamp: str) -> None:
    root = small(tmp_path)
    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET claimed_at = ?, updated_at = ?", (stamp, stamp))
    conn.commit()
    conn.close()
    for as_of in (AS_OF, None):
        code, out, err = report(root, as_of=as_of)
        assert code in (0, 1, 2), err
        assert json.loads(out)["tasks"]


def test_watch_survives_out_of_range_values(tmp_path: Path) -> None:
    root = small(tmp_path)
    _json_write(root / "agents" / "impl-1" / "state.json", pid="2147483648")
    proc = cli("watch", "--headless", "--root", str(root), "--interval", "0.5", "--ticks", "1")
    assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("value", "needle"), [
    ("'0001-01-01 00:00:00'", "DB attempt_count holds an unreadable value"),
    ("9e999", "DB attempt_count holds an unreadable value")])
def test_actions_refuse_unreadable_counts(tmp_path: Path, value: str, needle: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_state(tmp_path)
    conn = sqlite3.connect(root / "state.db")
    conn.execute(f"UPDATE tasks SET attempt_count = {value}, commits_count = 9e999")
    conn.commit()
    conn.close()
    assert main(["retry", IDS["failed"], "--dry-run", "--root", str(root)]) == 1
    assert needle in capsys.readouterr().err
    assert main(["accept", IDS["provisional"], "--dry-run", "--root", str(root)]) == 1
    assert "no evidence of work" in capsys.readouterr().err  # 9e999 commits: none known


# ------------------------------------------------------------------ 4. hostile agent names

def test_600_char_agent_name_is_a_read_problem(tmp_path: Path) -> None:
    root = small(tmp_path)
    name = "y" * 600
    conn = sqlite3.connect(root / "state.db")
    conn.execute("INSERT INTO agents (name, role, running) VALUES (?, 'implementer', 1)",
                 (name,))
    conn.execute("UPDATE tasks SET claimed_by = ? WHERE id = 'aaaa0001'", (name,))
    conn.commit()
    conn.close()
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    problems = json.loads(out)["problems"]
    assert any(p["message"] == "cannot read: File name too long" for p in problems)


@pytest.mark.parametrize("name", ["../..", "a/b", "..", ""])
def test_agent_names_that_are_no_directory_name_read_no_files(tmp_path: Path,
                                                              name: str) -> None:
    root = small(tmp_path)
    # what "../.." would find: a state.json beside .orchestrator/, outside the root
    (tmp_path / "state.json").write_text('{"running": true, "pid": 1}')
    conn = sqlite3.connect(root / "state.db")
    conn.execute("INSERT INTO agents (name, role, running) VALUES (?, 'implementer', 0)",
                 (name,))
    conn.commit()
    conn.close()
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    doc = json.loads(out)
    assert {p["path"]: p["message"] for p in doc["problems"]}[f"state.db agents[{name}]"] \
        .startswith("not a directory name")
    agent = next(a for a in doc["agents"] if a["name"] == name)
    assert agent["running"] is False and agent["pid"] is None  # the DB row, not a file


# ------------------------------------------------------------------ 5. a non-UTF-8 schema

def test_schema_not_utf8_is_unreadable_not_a_usage_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    root = small(tmp_path)
    data = bytearray((root / "state.db").read_bytes())
    at = data.index(b"(queue)", data.index(b"CREATE INDEX idx_tasks_queue"))
    data[at + 2] = 0xFF  # SQLite's error message now quotes bytes that are not UTF-8
    (root / "state.db").write_bytes(bytes(data))
    assert main(["report", "--root", str(root), "--as-of", AS_OF]) == 3
    err = capsys.readouterr().err
    assert "not a readable SQLite database (its schema is not valid UTF-8" in err


def test_one_cell_not_utf8_does_not_make_the_db_unreadable(tmp_path: Path) -> None:
    root = small(tmp_path)
    conn = sqlite3.connect(root / "state.db")
    conn.execute("UPDATE tasks SET role = CAST(x'ff41' AS TEXT) WHERE id = 'aaaa0002'")
    conn.commit()
    conn.close()
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    assert len(json.loads(out)["tasks"]) == 3


# ------------------------------------------------------------------ 6. read-only for real

def crashed_wal(root: Path) -> None:
    crashed_writer(root / "state.db", "UPDATE tasks SET queue='done' WHERE id='aaaa0002'")


def test_crashed_wal_db_is_read_whole_without_creating_shm(tmp_path: Path) -> None:
    root = small(tmp_path)
    crashed_wal(root)
    before = tree(root)
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    queues = {t["id"]: t["db_queue"] for t in json.loads(out)["tasks"]}
    assert queues["aaaa0002"] == "done"  # the committed frame in the -wal is seen
    assert tree(root) == before  # no state.db-shm, nothing else
    eng = open_engine(root, as_of=None)  # the live engine (watch, console) too
    eng.scan()
    assert eng.snapshot is not None and eng.snapshot.tasks["aaaa0002"].record.queue == "done"
    eng.scan()
    assert tree(root) == before


def test_writer_closing_while_the_crashed_wal_is_copied(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The soak found it: a writer's last close checkpoints and deletes the -wal while the
    reader copies it; the reader then reads the DB as it now is, never an exception."""
    import qwarden.core.sources.sqlite_ro as octopoid  # the shared read-only SQLite opener

    root = small(tmp_path)
    crashed_wal(root)
    real_copy = octopoid._copy_regular

    def copy_racing_a_writer(src: str, dst: str) -> None:
        if src.endswith("-wal") and os.path.exists(src):
            conn = sqlite3.connect(root / "state.db")  # a writer comes, checkpoints, goes
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        real_copy(src, dst)

    monkeypatch.setattr(octopoid, "_copy_regular", copy_racing_a_writer)
    code, out, err = report(root)
    assert code in (0, 1, 2), err
    assert {t["id"]: t["db_queue"] for t in json.loads(out)["tasks"]}["aaaa0002"] == "done"


def test_empty_db_beside_a_crashed_wal_keeps_its_wal(tmp_path: Path) -> None:
    """SQLite deletes the -wal of an empty database file, even for a read-only reader."""
    root = small(tmp_path)
    crashed_wal(root)
    (root / "state.db").write_bytes(b"")
    before = tree(root)
    code, _, err = report(root)
    assert code == 3 and "no tasks table" in err
    assert tree(root) == before


@pytest.mark.parametrize("mode", ["observe", "safe"])
def test_read_only_auto_fixer_creates_nothing(tmp_path: Path, mode: str) -> None:
    root, _ = build_state(tmp_path)
    before = tree(root)
    proc = cli("watch", "--headless", "--fix", mode, "--read-only", "--root", str(root),
               "--interval", "0.5", "--ticks", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "autofix" in proc.stdout
    assert not (root / "warden").exists()
    assert tree(root) == before


# ------------------------------------------------------------------ 7. no write outside

@pytest.mark.parametrize(("link", "action"), [
    ("shared/queue/failed", ["retry"]), ("shared/queue/incoming", ["retry"]),
    ("shared/queue/rejected", ["cancel", "--note", "x"]),
    ("shared/quarantine", ["quarantine", "--force"]), ("messages", ["escalate"]),
    ("warden", ["retry"]),
])
def test_symlinked_dirs_out_of_the_root_are_refused(tmp_path: Path, link: str,
                                                    action: list[str],
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    root, _ = build_state(tmp_path / "q")
    outside = tmp_path / "outside"
    outside.mkdir()
    d = root / link
    if d.exists():  # what was there moves out, the link points at it
        for f in d.iterdir():
            f.rename(outside / f.name)
        d.rmdir()
    d.parent.mkdir(parents=True, exist_ok=True)
    d.symlink_to(outside)
    before_out, before_root = tree(outside), tree(root)
    with deadline(20):
        code = main([*action, IDS["failed"], "--yes", "--force", "--root", str(root)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"refused: {link} is a symlink to {outside}, outside the root" in err
    assert tree(outside) == before_out and tree(root) == before_root


# ------------------------------------------------------------------ 8. escapes on stderr

def test_problem_paths_on_stderr_are_cleaned(tmp_path: Path) -> None:
    root = small(tmp_path)
    d = root / "agents" / "evil\x1b]52;c;aGVsbG8=\x07\x1b[2J"
    d.mkdir()
    (d / "state.json").write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root", str(root),
                           "--as-of", AS_OF], capture_output=True, cwd=REPO, env=ENV,
                          timeout=30)
    assert b"agents/evil" in proc.stderr and b"not valid JSON" in proc.stderr
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr


# ------------------------------------------------------------------ 10. optional config

def test_unreadable_default_config_path_is_not_fatal(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = small(tmp_path)
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))  # ~/.config/... : ENOTDIR, not ENOENT
    assert load_config(root) == (load_config(None, None)[0], None)
    if os.geteuid() != 0:  # root reads through any mode bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        monkeypatch.setenv("HOME", str(locked))
        assert load_config(root)[1] is None
    explicit = tmp_path / "missing.toml"
    with pytest.raises(Exception, match="config file not found"):
        load_config(root, explicit)  # an explicit --config still must exist


# ------------------------------------------------------------------ 11. continuous writer

def test_task_written_continuously_says_so(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = build_state(tmp_path)
    tid = IDS["failed"]
    path = root / "shared" / "queue" / "failed" / f"TASK-{tid}.md"
    base = path.read_bytes()
    stop = threading.Event()

    def agent() -> None:  # rewrites the task every 2 ms, as the audit's agent did
        n = 0
        while not stop.is_set():
            n += 1
            tmp = path.with_name(".agent.tmp")
            tmp.write_bytes(base + f"PROGRESS: {n}\n".encode())
            os.replace(tmp, path)
            time.sleep(0.002)

    t = threading.Thread(target=agent, daemon=True)
    t.start()
    try:
        with deadline(30):
            code = main(["retry", tid, "--yes", "--force", "--root", str(root)])
    finally:
        stop.set()
        t.join()
    err = capsys.readouterr().err
    assert code == 1
    assert "is being written continuously" in err and "Wait until it stops" in err
    assert path.read_bytes().startswith(base)  # still the agent's file, where it was
