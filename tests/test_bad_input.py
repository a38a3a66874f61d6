"""Bad input: a clear one-line error naming the path (exit 3) or a finding, never a traceback."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qwarden.core.cli import main
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid.reader import resolve_root
from qwarden.core.timefmt import parse_as_of
from tests.builders import StateBuilder
from tests.conftest import snapshot_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TZ": "UTC", "HOME": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "qwarden.core.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60)


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("qwarden: ") and needle in lines[0], lines


def small_state(tmp_path: Path) -> StateBuilder:
    b = StateBuilder(tmp_path)
    b.task("t1", db_queue="incoming")
    b.build()
    return b


def test_missing_root_and_no_root_found(tmp_path: Path) -> None:
    one_line_error(run_cli("report", "--root", str(tmp_path / "nope")), "no such directory")
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    one_line_error(proc, "no .orchestrator directory")


def test_root_discovery_walks_up_and_accepts_parent(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    assert resolve_root(None, cwd=deep, env={}) == b.root.resolve()
    assert resolve_root(str(tmp_path), env={}) == b.root.resolve()
    assert resolve_root(None, cwd=deep, env={"QWARDEN_ROOT": str(b.root)}) == b.root.resolve()


def test_missing_db(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    (b.root / "state.db").unlink()
    one_line_error(run_cli("report", "--root", str(b.root)), "state.db: database missing")


def test_corrupt_db(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    (b.root / "state.db").write_bytes(b"this is not sqlite at all" * 100)
    one_line_error(run_cli("report", "--root", str(b.root)), "not a readable SQLite database")


def test_foreign_db(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    (b.root / "state.db").unlink()
    conn = sqlite3.connect(b.root / "state.db")
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    one_line_error(run_cli("report", "--root", str(b.root)), "not an Octopoid state.db")


def test_locked_db_is_retried_then_reported(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    holder = sqlite3.connect(b.root / "state.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        cfg = tmp_path / "q.toml"
        cfg.write_text("[limits]\ndb_busy_retries = 1\ndb_busy_timeout_ms = 50\n")
        one_line_error(run_cli("report", "--root", str(b.root), "--config", str(cfg)),
                       "locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_older_schema_missing_columns_is_read(tmp_path: Path) -> None:
    root = tmp_path / ".orchestrator"
    (root / "shared" / "queue" / "incoming").mkdir(parents=True)
    (root / "shared" / "queue" / "incoming" / "TASK-aaaa0001.md").write_text(
        "# [TASK-aaaa0001] Old\n\nROLE: implement\n")
    conn = sqlite3.connect(root / "state.db")
    conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, file_path TEXT, queue TEXT)")
    conn.execute("INSERT INTO tasks VALUES ('aaaa0001', 'x', 'incoming')")
    conn.commit()
    conn.close()
    snap = open_engine(root, as_of=parse_as_of("2026-11-22T22:00:00")).scan()
    assert snap.verdicts["aaaa0001"].effective_state == "incoming"


def test_bad_config_and_bad_as_of(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[thresholds]\nzombie_after_s = -5\n")
    one_line_error(run_cli("report", "--root", str(b.root), "--config", str(cfg)), "bad.toml")
    proc = run_cli("report", "--root", str(b.root), "--as-of", "yesterday-ish")
    assert proc.returncode == 64 and "not an ISO 8601 time" in proc.stderr  # usage error
    assert "Traceback" not in proc.stderr


def test_symlinks_out_of_root_are_not_followed(tmp_path: Path) -> None:
    b = small_state(tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_text("# [TASK-5ec12e70] outside\n")
    os.symlink(secret, b.root / "shared" / "queue" / "incoming" / "TASK-5ec12e70.md")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "TASK-0badd1e0.md").write_text("# [TASK-0badd1e0] outside dir\n")
    os.symlink(outside_dir, b.root / "shared" / "queue" / "rejected", target_is_directory=True) \
        if not (b.root / "shared" / "queue" / "rejected").exists() else None
    (b.root / "shared" / "queue" / "rejected").rmdir()
    os.symlink(outside_dir, b.root / "shared" / "queue" / "rejected", target_is_directory=True)
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    assert "5ec12e70" not in snap.tasks and "0badd1e0" not in snap.tasks
    msgs = " | ".join(p.message for p in snap.problems)
    assert "symlink pointing outside the root" in msgs and "out of the root" in msgs


def test_huge_task_file_reads_a_bounded_prefix_and_keeps_the_trail(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path)
    b.task("t1", db_queue="claimed", db={"claimed_by": "a1", "claimed_at": 600})
    b.build()
    p = b.root / "shared" / "queue" / "incoming" / "TASK-t1.md"
    text = p.read_text()
    big = text.replace("Do the thing.", "Do the thing.\n" + ("lorem ipsum " * 10 + "\n") * 60000)
    p.write_text(big + f"\nCLAIMED_BY: a1\nCLAIMED_AT: {b.at(600)}\n\n"
                       f"FAILED_AT: {b.at(500)}\n")
    assert p.stat().st_size > 5_000_000
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    f = snap.tasks["t1"].primary_file
    assert f.truncated and f.parseable and f.trail[-1].kind == "FAILED"
    assert snap.verdicts["t1"].effective_state == "failed"


def test_unreadable_queue_dir_is_reported_not_raised(tmp_path: Path, monkeypatch) -> None:
    b = small_state(tmp_path)
    real_open = os.open

    def deny_failed_dir(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        # tests run as root, where chmod denies nothing: refuse opening the dir instead
        if str(path).endswith("/failed") and flags & os.O_DIRECTORY:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_failed_dir)
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    assert any("failed" in p.path and "Permission denied" in p.message for p in snap.problems)
    assert "t1" in snap.tasks


def test_report_never_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = StateBuilder(tmp_path)
    b.task("t1", db_queue="claimed", trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 4 * 3600)],
           db={"claimed_by": "a1", "claimed_at": 4 * 3600})
    b.task("t2", db_queue=None, raw={"incoming": b"\x00junk"})
    b.agent("a1", running=True, started_age=4 * 3600)
    b.build()
    # WAL mode like a live Octopoid DB
    conn = sqlite3.connect(b.root / "state.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    before = snapshot_bytes(tmp_path)
    mtimes = {p: os.stat(tmp_path / p).st_mtime_ns for p in before}
    assert main(["report", "--root", str(b.root), "--json"]) == 2
    json.loads(capsys.readouterr().out)
    assert main(["report", "--root", str(b.root)]) == 2
    assert snapshot_bytes(tmp_path) == before
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in before} == mtimes
