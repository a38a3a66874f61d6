"""Fuzz target (issue 9): hostile task files, agent files, DB cells and directory entries of
every kind, thrown at the report (and at the interventions' dry runs).

Each input is a small Octopoid state copied from a template and then hit by 1-5 random
mutations: task files of random or hostile bytes, agent JSON with non-finite and huge numbers,
agent files replaced by FIFOs, directories, links to /dev/zero or out of the root, DB cells of
every type and range, agent rows with hostile names, queue entries that are FIFOs, links or
dirs, hostile file names, a byte-flipped or truncated state.db, a crashed writer's WAL. For
every input:

- the exit code is in the documented set (report 0-3; a dry-run action 0, 1, 3);
- stdout is valid JSON against the report's schema (the pydantic model), or exit 3 says why
  in one stderr line;
- no exception escapes, no traceback, no hang (a deadline per input), no unbounded read (the
  address space is capped at +512 MiB while it runs);
- no byte, name or mtime changes in the state directory (no -shm, -wal or journal either),
  nothing is written to the directory the links point out to, no temp copy is left behind.

Runs in-process (fast enough for a few hundred inputs in CI) plus a few subprocess runs for the
exit-code/traceback property of the real command. ``QWARDEN_FUZZ_INPUTS`` and
``QWARDEN_FUZZ_SEED`` scale it up or move it (the README's figures: 3,000 inputs).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from qwarden.core.cli import main
from qwarden.core.report import Report
from tests.builders import StateBuilder
from tests.hostile import Hang, crashed_writer, deadline, memory_cap, tree

INPUTS = int(os.environ.get("QWARDEN_FUZZ_INPUTS", "300"))
SEED = int(os.environ.get("QWARDEN_FUZZ_SEED", "9"))
SUBPROCESS_RUNS = 4
AS_OF = "2026-11-22T22:10:00"
REPO = Path(__file__).resolve().parents[1]
IDS = [f"aaaa000{i}" for i in range(1, 7)]
QUEUES = ["incoming", "claimed", "provisional", "done", "failed", "rejected", "escalated",
          "recycled", "breakdown", "needs_continuation"]
AGENT_FILES = ["state.json", "status.json", "current_task.json", "heartbeat", "stdout.log"]
ESCAPES = ["\x1b]52;c;aGVsbG8=\x07", "\x1b[2J", "\x1b]0;pwned\x07", "[bold red]x[/]", "\x9b31m",
           "\r\n", "\x00", "\u202e", "\x1bP1$r\x1b\\"]
NUMBERS = ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1e300", "2147483648",
           "9223372036854775808", "-1", "0", "3.5", '"12"', '"x"', "null", "true", "[]", "{}",
           "[" * 2000 + "]" * 2000]
STAMPS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01 00:00:00",
          "2026-13-45T99:99:99", "", "yesterday", "2026-11-22T22:00:00", "1e300",
          "2026-11-22T21:00:00+99:00"]
CELLS = ["9e999", "-9e999", "1e300", "9223372036854775807", "-9223372036854775808", "-1",
         "x'ff00'", "CAST(x'ff41' AS TEXT)", "''", "'TASK-../../etc'", "'/etc/passwd'",
         "NULL", "'{\"a\": '", "'" + "x" * 5000 + "'", "0.5", "'\x1b]52;c;aGk=\x07'"]
TASK_COLUMNS = ["queue", "priority", "role", "file_path", "claimed_by", "claimed_at",
                "blocked_by", "commits_count", "attempt_count", "rejection_count",
                "check_results", "submitted_at", "completed_at", "created_at", "updated_at",
                "project_id", "id"]


# ------------------------------------------------------------------ templates

def _template(base: Path, wal: str) -> Path:
    b = StateBuilder(base)
    b.task(IDS[0], db_queue="claimed", file_queues=("claimed",),
           trail=[("CLAIMED_BY", "impl-1"), ("CLAIMED_AT", 600)],
           db={"claimed_by": "impl-1", "claimed_at": 600})
    b.task(IDS[1], db_queue="failed", file_queues=("failed",),
           trail=[("FAILED_AT", 900), ("", None), ("## Error", None), ("```", "boom"),
                  ("```", None)])
    b.task(IDS[2], db_queue="provisional", file_queues=("provisional",),
           db={"commits_count": 0, "submitted_at": 1200})
    b.task(IDS[3], db_queue="done", file_queues=("incoming",), db={"updated_at": 300})
    b.task(IDS[4], db_queue=None, file_queues=("incoming",))
    b.task(IDS[5], db_queue="incoming", file_queues=(), db={"blocked_by": IDS[1]})
    b.agent("impl-1", pid=os.getpid(), heartbeat_age=30, status=(IDS[0], 30),
            current_task=IDS[0], db_row=True)
    b.agent("impl-2", running=False, finished_age=4000)
    root = b.build()
    (root / "shared" / "notes" / f"TASK-{IDS[1]}.md").write_text("## Attempt 1 — impl-1 "
                                                                 "(2026-11-22T21:00:00)\nx\n")
    if wal == "crashed":
        crashed_writer(root / "state.db", "UPDATE tasks SET priority='P0'")
    elif wal == "idle":
        conn = sqlite3.connect(root / "state.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    return base


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [_template(tmp_path_factory.mktemp(f"tpl-{w}"), w)
            for w in ("rollback", "idle", "crashed")]


# ------------------------------------------------------------------ mutations

class Ctx:
    def __init__(self, rng: random.Random, base: Path, outside: Path) -> None:
        self.rng = rng
        self.base = base
        self.root = base / ".orchestrator"
        self.outside = outside

    def hostile_text(self) -> str:
        r = self.rng
        return "".join(r.choice([*ESCAPES, "TASK-", "## Error", "FAILED_AT: ", "ok", "é",
                                 "\n", " " * 3, "x" * r.randint(1, 300)])
                       for _ in range(r.randint(1, 8)))

    def task_path(self) -> Path:
        q = self.rng.choice(QUEUES)
        tid = self.rng.choice([*IDS, "bbbb0001", "deadbeef"])
        return self.root / "shared" / "queue" / q / f"TASK-{tid}.md"

    def agent_dir(self) -> Path:
        return self.root / "agents" / self.rng.choice(["impl-1", "impl-2"])

    def replace(self, path: Path) -> None:
        """Whatever is at ``path`` goes (file, link or dir)."""
        if path.is_symlink() or path.is_file() or _is_special(path):
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _is_special(p: Path) -> bool:
    try:
        return not (p.is_dir() or p.is_file()) and os.path.lexists(p)
    except OSError:
        return False


def m_task_bytes(c: Ctx) -> str:
    r = c.rng
    p = c.task_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    c.replace(p)
    kind = r.choice(["random", "header", "trail", "huge", "utf8", "nul"])
    tid = p.name[5:-3]
    if kind == "random":
        data = r.randbytes(r.randint(0, 2000))
    elif kind == "header":
        data = (f"# [TASK-{tid}] {c.hostile_text()}\n\nROLE: {c.hostile_text()}\n"
                f"PRIORITY: {r.choice(NUMBERS)}\nBLOCKED_BY: {c.hostile_text()}\n"
                f"CREATED: {r.choice(STAMPS)}\n").encode()
    elif kind == "trail":
        keys = ["CLAIMED_AT", "CLAIMED_BY", "FAILED_AT", "SUBMITTED_AT", "COMMITS_COUNT",
                "RETRIED_AT", "NEEDS_CONTINUATION_AT", "ACCEPTED_AT", "TURNS_USED"]
        lines = [f"# [TASK-{tid}] t", "", "ROLE: implement", ""]
        for _ in range(r.randint(1, 30)):
            k = r.choice(keys)
            v = r.choice(STAMPS) if k.endswith("_AT") else r.choice(NUMBERS + ESCAPES)
            lines.append(f"{k}: {v}")
        data = "\n".join(lines).encode()
    elif kind == "huge":
        data = f"# [TASK-{tid}] big\n".encode() + b"FAILED_AT: x\n" * r.randint(20000, 40000)
    elif kind == "utf8":
        data = f"# [TASK-{tid}] t\n".encode() + b"\xc3\x28\xff\xfe" * r.randint(1, 50)
    else:
        data = b"# [TASK-x] t\n\x00\x00"
    p.write_bytes(data)
    return f"task file {kind}"


def m_agent_json(c: Ctx) -> str:
    r = c.rng
    d = c.agent_dir()
    name = r.choice(["state.json", "status.json", "current_task.json"])
    keys = {"state.json": ["pid", "running", "last_started", "last_finished",
                           "last_exit_code", "consecutive_failures", "current_task"],
            "status.json": ["task_id", "progress_percent", "last_updated",
                            "current_subtask"],
            "current_task.json": ["task_id", "started_at"]}[name]
    parts = []
    for k in r.sample(keys, r.randint(1, len(keys))):
        v = r.choice(NUMBERS + [json.dumps(r.choice(STAMPS)), json.dumps(c.hostile_text())])
        parts.append(f'"{k}": {v}')
    text = "{" + ", ".join(parts) + "}"
    if r.random() < 0.1:
        text = r.choice(["[1, 2]", "{", "\"str\"", "\xff\xfe"])
    c.replace(d / name)
    (d / name).write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return f"agent {name}"


def m_agent_entry(c: Ctx) -> str:
    r = c.rng
    p = c.agent_dir() / r.choice(AGENT_FILES)
    c.replace(p)
    kind = r.choice(["fifo", "dev-zero", "outside-file", "dir", "loop", "dangling"])
    _make_entry(c, p, kind)
    return f"agent entry {kind}"


def _make_entry(c: Ctx, p: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dev-zero":
        p.symlink_to("/dev/zero")
    elif kind == "outside-file":
        p.symlink_to(c.outside / "secret.md")
    elif kind == "outside-dir":
        p.symlink_to(c.outside)
    elif kind == "dir":
        p.mkdir()
    elif kind == "loop":
        p.symlink_to(p.name)
    else:
        p.symlink_to(c.outside / "missing")


def m_dir_entry(c: Ctx) -> str:
    r = c.rng
    kind = r.choice(["fifo", "dev-zero", "outside-file", "outside-dir", "dir", "loop",
                     "dangling", "name", "queue-link", "agents-link", "notes"])
    if kind == "name":
        d = c.root / "shared" / "queue" / r.choice(QUEUES)
        name = r.choice(["TASK-" + "a" * 240 + ".md", "TASK-\x1b]52;c;aGk=\x07.md",
                         "TASK-aaaa0001.md\n", "evil\x1b[2J", "TASK-..md", " TASK-aaaa0001.md"])
        (d / name).write_bytes(b"# [TASK-x] t\n")
        return "hostile name"
    if kind == "queue-link":
        d = c.root / "shared" / "queue" / r.choice(QUEUES)
        c.replace(d)
        d.symlink_to(r.choice([c.outside, Path("/dev/zero"), c.outside / "nope"]))
        return "queue dir link"
    if kind == "agents-link":
        d = c.root / "agents" / r.choice(["impl-3", "\x1b]0;x\x07"])
        d.symlink_to(c.outside)
        return "agent dir link"
    if kind == "notes":
        p = c.root / "shared" / "notes" / f"TASK-{r.choice(IDS)}.md"
        c.replace(p)
        _make_entry(c, p, r.choice(["fifo", "dev-zero", "dir"]))
        return "notes entry"
    p = c.task_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    c.replace(p)
    _make_entry(c, p, kind)
    return f"queue entry {kind}"


def m_db_cell(c: Ctx) -> str:
    r = c.rng
    col = r.choice(TASK_COLUMNS)
    value = r.choice(CELLS + [f"'{s}'" for s in STAMPS])
    where = r.choice([f"WHERE id = '{r.choice(IDS)}'", ""])
    _sql(c.root, f"UPDATE OR IGNORE tasks SET {col} = {value} {where}")
    return f"db cell {col}"


def m_db_agent(c: Ctx) -> str:
    r = c.rng
    name = r.choice(["y" * 600, "../..", "a/b", "\x1b]52;c;aGk=\x07", "", ".", "impl-1"])
    pid = r.choice(CELLS)
    _sql(c.root, f"INSERT OR REPLACE INTO agents (name, role, running, pid, current_task_id) "
                 f"VALUES (?, 'implementer', 1, {pid}, ?)", (name, r.choice(IDS)))
    if r.random() < 0.5:
        _sql(c.root, "UPDATE tasks SET claimed_by = ?", (name,))
    return "db agent row"


def m_db_file(c: Ctx) -> str:
    r = c.rng
    db = c.root / "state.db"
    if not db.is_file() or db.is_symlink():
        return "db file (none)"
    data = bytearray(db.read_bytes())
    if not data:
        return "db file (already empty)"
    kind = r.choice(["flip", "flip-schema", "truncate", "fifo", "empty"])
    if kind == "flip":
        for _ in range(r.randint(1, 20)):
            i = r.randrange(len(data))
            data[i] = r.randrange(256)
    elif kind == "flip-schema":
        at = data.find(b"CREATE")
        for _ in range(r.randint(1, 5)):
            i = r.randrange(at, min(len(data), at + 3000))
            data[i] = r.choice([0xFF, 0x00, 0x80, ord("'"), ord("(")])
    elif kind == "truncate":
        data = data[: r.randrange(len(data))]
    elif kind == "fifo":
        db.unlink()
        os.mkfifo(db)
        return "db fifo"
    else:
        data = bytearray()
    db.write_bytes(bytes(data))
    return f"db file {kind}"


def m_config(c: Ctx) -> str:
    p = c.base / "qwarden.toml"
    c.replace(p)
    kind = c.rng.choice(["fifo", "dev-zero", "dir", "garbage", "values"])
    if kind == "garbage":
        p.write_bytes(c.rng.randbytes(200))
    elif kind == "values":
        p.write_text("[thresholds]\nzombie_after_s = 1e400\n[limits]\n"
                     "max_task_file_bytes = 99999999999999999999\n")
    else:
        _make_entry(c, p, kind)
    return f"config {kind}"


def _sql(root: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    try:
        conn = sqlite3.connect(root / "state.db", timeout=1)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
    except (sqlite3.Error, OSError, UnicodeDecodeError):
        pass  # an earlier mutation broke the DB: that is an input too


MUTATIONS: list[tuple[Callable[[Ctx], str], int]] = [
    (m_task_bytes, 6), (m_agent_json, 5), (m_agent_entry, 4), (m_dir_entry, 5),
    (m_db_cell, 6), (m_db_agent, 2), (m_db_file, 1), (m_config, 1)]


def mutate(c: Ctx, n: int) -> list[str]:
    done = []
    for fn in c.rng.choices([m for m, _ in MUTATIONS], weights=[w for _, w in MUTATIONS],
                            k=n):
        try:
            done.append(fn(c))
        except OSError:  # an earlier mutation took the place away (a dir became a link...)
            done.append(f"{fn.__name__} (not applicable)")
    return done


# ------------------------------------------------------------------ properties

REPORT_CODES = {0, 1, 2, 3}
ACTION_CODES = {0, 1, 3}
TOP_KEYS = {f.alias or name for name, f in Report.model_fields.items()}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with deadline(20), memory_cap(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_report_json(code: int, out: str, err: str) -> str | None:
    if code not in REPORT_CODES:
        return f"exit {code}"
    if "Traceback" in err:
        return "traceback on stderr"
    if code == 3 and not out:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        return None if lines and lines[-1].startswith("qwarden: ") else "exit 3 unexplained"
    try:
        doc = json.loads(out)
        Report.model_validate(doc)
    except ValueError as exc:
        return f"invalid JSON report: {str(exc)[:200]}"
    if set(doc) != TOP_KEYS:
        return f"keys {sorted(set(doc) ^ TOP_KEYS)} outside the schema"
    if doc["exit_code"] != code:
        return f"exit {code} but the report says {doc['exit_code']}"
    return None


def _leftover_copies() -> set[str]:
    tmp = tempfile.gettempdir()
    return {n for n in os.listdir(tmp) if n.startswith("qwarden-db-")}


def fuzz_one(i: int, templates: list[Path], work: Path, stats: Counter[str]) -> str | None:
    """One input; returns a failure description (None: every property held)."""
    rng = random.Random(SEED * 1_000_003 + i)
    case = work / f"case-{i}"
    outside = work / f"outside-{i}"
    outside.mkdir()
    (outside / "secret.md").write_text("# [TASK-aaaa0001] not yours\n")
    shutil.copytree(rng.choice(templates), case, symlinks=True)
    ctx = Ctx(rng, case, outside)
    done = mutate(ctx, rng.randint(1, 5))
    stats.update(d.split(" (")[0] for d in done)
    before, before_out, copies = tree(case), tree(outside), _leftover_copies()
    root = str(ctx.root)
    runs = [["report", "--json", "--root", root, "--as-of", AS_OF]]
    if rng.random() < 0.3:
        runs.append(["report", "--json", "--root", root])  # live: pids checked too
    if rng.random() < 0.2:
        runs.append(["report", "--all", "--root", root, "--as-of", AS_OF])
    if rng.random() < 0.25:
        kind = rng.choice(["retry", "release", "sync", "accept", "cancel", "clear-error",
                           "quarantine", "register", "escalate", "mark-read", "repair-path"])
        note = ["--note", "fuzz"] if kind == "cancel" else []  # (cancel requires a reason)
        runs.append([kind, rng.choice(IDS), "--dry-run", "--force", "--root", root, *note])
    for argv in runs:
        what = f"input {i} (seed {SEED}; {', '.join(done)}): {' '.join(argv[:2])}"
        try:
            code, out, err = _run(argv)
        except Hang:
            stats["hangs"] += 1
            return f"{what}: hang"
        except BaseException:
            stats["crashes"] += 1
            return f"{what}: crash\n{traceback.format_exc()[-1500:]}"
        stats["runs"] += 1
        if argv[1] == "--json":
            problem = check_report_json(code, out, err)
        elif argv[0] == "report":
            problem = None if code in REPORT_CODES and "Traceback" not in err else f"exit {code}"
        else:
            problem = None if code in ACTION_CODES and "Traceback" not in err \
                else f"exit {code}: {err[-300:]}"
        if problem:
            stats["crashes"] += 1
            return f"{what}: {problem}"
    if tree(case) != before or tree(outside) != before_out:
        stats["writes"] += 1
        changed = sorted(set(tree(case).items()) ^ set(before.items()))[:4]
        return f"input {i} (seed {SEED}; {', '.join(done)}): wrote {changed}"
    if _leftover_copies() - copies:
        stats["writes"] += 1
        return f"input {i}: left a private DB copy in the temp dir"
    shutil.rmtree(case)
    shutil.rmtree(outside)
    return None


@pytest.fixture(autouse=True)
def _utc(utc_tz: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a temp dir of this test's own, so "no private DB copy left behind" sees only ours
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


def test_fuzz_hostile_inputs(templates: list[Path], tmp_path: Path) -> None:
    stats: Counter[str] = Counter()
    failures = []
    for i in range(INPUTS):
        failure = fuzz_one(i, templates, tmp_path, stats)
        if failure:
            failures.append(failure)
    summary = (f"fuzz: {INPUTS} inputs, {stats['runs']} runs, crashes {stats['crashes']}, "
               f"hangs {stats['hangs']}, writes {stats['writes']}; mutations "
               + ", ".join(f"{k} {n}" for k, n in sorted(stats.items())
                           if k not in ("runs", "crashes", "hangs", "writes")))
    print(summary)
    assert not failures, f"{len(failures)} failing inputs; first:\n" + "\n".join(failures[:3])


def test_fuzz_subprocess_exit_codes(templates: list[Path], tmp_path: Path) -> None:
    """The real command on a few fuzzed inputs: exit code in the set, no traceback, JSON."""
    stats: Counter[str] = Counter()
    for i in range(SUBPROCESS_RUNS):
        rng = random.Random(SEED * 7919 + i)
        case, outside = tmp_path / f"s{i}", tmp_path / f"o{i}"
        outside.mkdir()
        shutil.copytree(rng.choice(templates), case, symlinks=True)
        ctx = Ctx(rng, case, outside)
        done = mutate(ctx, 3)
        stats.update(done)
        before = tree(case)
        proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                               "report", "--json", "--root",
                               str(ctx.root), "--as-of", AS_OF], capture_output=True,
                              text=True, cwd=REPO, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "TZ": "UTC", "HOME": "/nonexistent"})
        assert check_report_json(proc.returncode, proc.stdout, proc.stderr) is None, (done,
                                                                                      proc.stderr)
        assert tree(case) == before, done
