"""The headless report: JSON schema, exit codes, and untrusted text staying plain text."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import msgspec.structs
import pytest
from rich.console import Console

from qwarden.core.formats import open_engine
from qwarden.core.report import (
    Report,
    TaskOut,
    TaskRow,
    build_report,
    exit_code,
    render_json,
    render_text,
    write_json,
)
from qwarden.core.timefmt import parse_as_of
from tests.builders import StateBuilder

REPO = Path(__file__).resolve().parents[1]
NASTY = "[/foo] [@click=app.quit] [$accent] [bold]x \x1b]52;c;aGk=\x07 \x1b[2J \x1b[31mred"


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def nasty_state(tmp_path: Path) -> StateBuilder:
    b = StateBuilder(tmp_path)
    b.task("evil0001", db_queue="incoming", title=NASTY, trail=[
        ("CLAIMED_BY", "a1"), ("CLAIMED_AT", 1200), ("FAILED_AT", 1100),
        ("## Error", f"```\n{NASTY}\nValueError: {NASTY}\n```"), ("RETRIED_AT", 900)])
    b.task("evil0002", db_queue=None, title=NASTY)
    b.agent("a1", running=False, started_age=1300, finished_age=1000)
    b.build()
    return b


def test_injection_stays_plain_in_text_and_json(tmp_path: Path) -> None:
    b = nasty_state(tmp_path)
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    buf = io.StringIO()
    render_text(snap, Console(file=buf, width=200, force_terminal=True, color_system="standard"),
                show_all=True)
    out = buf.getvalue()
    assert "[/foo] [@click=app.quit] [$accent] [bold]x" in out  # literally, not parsed
    assert "\x1b]52" not in out and "\x1b[2J" not in out
    assert "aGk=" not in out  # the OSC 52 payload went with its sequence
    data = json.loads(render_json(snap))
    titles = {t["id"]: t["title"] for t in data["tasks"]}
    assert titles["evil0001"].startswith("[/foo] [@click=app.quit] [$accent] [bold]x")
    dumped = json.dumps(data)
    assert "\\u001b" not in dumped and "\\u0007" not in dumped
    err = next(f for f in data["findings"] if f["kind"] == "stale_error")
    assert any("[@click=app.quit]" in e["value"] for e in err["evidence"])


def test_json_report_follows_its_schema_and_exit_codes(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path)
    b.task("ok000001", db_queue="incoming")
    b.build()
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    assert exit_code(snap) == 0
    rep = Report.model_validate_json(render_json(snap))
    assert rep.status == "healthy" and rep.tasks[0].liveness == "idle"
    b2 = StateBuilder(tmp_path / "two")
    b2.task("w0000001", db_queue="provisional", file_queues=("provisional",),
            trail=[("CLAIMED_BY", "a"), ("CLAIMED_AT", 3000), ("SUBMITTED_AT", 2000),
                   ("COMMITS_COUNT", 0)], db={"commits_count": 0})
    b2.build()
    snap2 = open_engine(b2.root, as_of=parse_as_of(b2.now.isoformat())).scan()
    assert exit_code(snap2) == 1
    rep2 = build_report(snap2)
    t = rep2.tasks[0]
    assert (t.db_queue, t.file_queue, t.effective_state) == ("provisional", "provisional",
                                                              "provisional")
    assert rep2.findings[0].kind == "unverified_completion"
    assert rep2.findings[0].evidence and rep2.findings[0].recommended_action == "review"


def test_cli_json_schema_and_stdout_stderr_split(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--json-schema"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    schema = json.loads(proc.stdout)
    assert "findings" in schema["properties"] and "schema_version" in schema["properties"]
    b = nasty_state(tmp_path)
    (b.root / "agents" / "a1" / "status.json").write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--json", "--root",
                           str(b.root), "--as-of", b.now.isoformat()],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    json.loads(proc.stdout)  # stdout is only the result
    assert "agents/a1/status.json: not valid JSON" in proc.stderr
    assert proc.returncode == 1


def test_streamed_json_equals_the_document(tmp_path: Path) -> None:
    b = nasty_state(tmp_path)
    snap = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    buf = io.BytesIO()
    write_json(snap, buf)
    assert json.loads(buf.getvalue()) == json.loads(render_json(snap))
    Report.model_validate_json(buf.getvalue())


def test_task_rows_are_encoded_in_the_schema_s_field_order() -> None:
    # the JSON's tasks are encoded straight from TaskRow: its fields are TaskOut's, in order
    assert msgspec.structs.fields(TaskRow) and [f.name for f in msgspec.structs.fields(TaskRow)] \
        == list(TaskOut.model_fields)


def test_every_action_hint_is_a_command_the_same_state_accepts(tmp_path: Path, capsys
                                                               ) -> None:  # type: ignore[no-untyped-def]
    # Each task's "what to do next" command, run with --dry-run on the same state, is planned
    # (exit 0), never refused: a stale file_path's hint is repair-path, not sync.
    import shlex
    import sqlite3

    from qwarden.core.cli import main
    from qwarden.core.report import action_hint
    from tests.test_actions_support import IDS, build_state

    root, _ = build_state(tmp_path)
    conn = sqlite3.connect(root / "state.db")  # and a stale file_path beside the rest
    conn.execute("UPDATE tasks SET file_path='/elsewhere/shared/queue/failed/TASK-' || id || "
                 "'.md' WHERE id=?", (IDS["done"],))
    conn.commit()
    conn.close()
    snap = open_engine(root).scan()
    hints = {tid: h for tid in snap.verdicts if (h := action_hint(snap, tid))}
    assert hints[IDS["done"]] == f"qwarden repair-path {IDS['done']}"
    assert len(set(h.split()[1] for h in hints.values())) >= 5  # a real mix of commands
    for hint in sorted(hints.values()):
        argv = shlex.split(hint)[1:] + ["--root", str(root), "--dry-run"]
        code = main(argv)
        assert code == 0, (hint, capsys.readouterr().err)
    buf = io.StringIO()
    render_text(snap, Console(file=buf, width=200))
    printed = [ln.split("e.g. ", 1)[1].strip() for ln in buf.getvalue().splitlines()
               if "e.g. " in ln]
    assert printed and set(printed) <= set(hints.values())
