"""``qwarden ACTION TASK_ID``, ``qwarden undo``, ``qwarden log``: exit codes, confirmation,
dry run, read-only, the live-claim guard, the verify gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwarden.core.cli import main
from tests.test_actions_support import IDS, build_state, row, snapshot


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return build_state(tmp_path)[0]


def run(root: Path, *argv: str) -> int:
    return main([argv[0], *argv[1:], "--root", str(root)])


def test_dry_run_shows_plan_writes_nothing(root: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    before = snapshot(root)
    assert run(root, "retry", IDS["failed"], "--dry-run", "--note", "again") == 0
    out = capsys.readouterr().out
    assert f"retry TASK-{IDS['failed']}" in out
    assert "db tasks[id=aaaa0001].queue: 'failed' -> 'incoming'" in out
    assert "file shared/queue/failed/TASK-aaaa0001.md -> shared/queue/incoming/" in out
    assert snapshot(root) == before and not (root / "warden").exists()


def test_no_tty_without_yes_refuses(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)
    assert run(root, "retry", IDS["failed"]) == 1
    assert "--yes" in capsys.readouterr().err
    assert snapshot(root) == before


def test_yes_applies_and_log_and_undo(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)
    assert run(root, "retry", f"TASK-{IDS['failed']}", "--yes", "--note", "go") == 0
    assert "done: action 1" in capsys.readouterr().out
    assert row(root, IDS["failed"])["queue"] == "incoming"  # type: ignore[index]
    assert run(root, "log") == 0
    out = capsys.readouterr().out
    assert "#1" in out and "retry" in out and "“go”" in out
    assert run(root, "log", "--json") == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in recs] == ["intent", "done"]
    assert run(root, "undo", "--dry-run") == 0
    assert "undo action 1 (retry)" in capsys.readouterr().out
    assert run(root, "undo", "--yes") == 0
    assert snapshot(root) == before
    assert run(root, "undo", "--yes") == 1
    assert "nothing to undo" in capsys.readouterr().err


def test_refusals_exit_1(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "accept", IDS["unverified"], "--yes") == 1
    assert "unverified_completion" in capsys.readouterr().err
    assert run(root, "accept", IDS["unverified"], "--yes", "--force") == 0
    assert run(root, "retry", "ffff9999", "--yes") == 1
    assert "no such task" in capsys.readouterr().err
    assert run(root, "retry", "../etc", "--yes") == 1


def test_live_claim_guard(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)
    assert run(root, "release", IDS["live"], "--yes") == 1
    assert "worked on right now" in capsys.readouterr().err
    assert snapshot(root) == before
    assert run(root, "release", IDS["zombie"], "--yes") == 0


def test_sync_takes_the_findings_direction(root: Path) -> None:
    assert run(root, "sync", IDS["mismatch_file"], "--yes") == 0
    assert (root / "shared/queue/done" / f"TASK-{IDS['mismatch_file']}.md").exists()


def test_read_only_flag_and_config(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(root)
    assert main(["--read-only", "retry", IDS["failed"], "--yes", "--root", str(root)]) == 1
    assert run(root, "retry", IDS["failed"], "--yes", "--read-only") == 1
    assert "read-only" in capsys.readouterr().err
    (root.parent / "qwarden.toml").write_text("read_only = true\n")
    assert run(root, "retry", IDS["failed"], "--yes") == 1
    assert run(root, "undo", "--yes") == 1
    assert run(root, "retry", IDS["failed"], "--dry-run") == 0  # looking is fine
    assert snapshot(root) == before


def test_verify_gates_accept(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = root.parent / "qwarden.toml"
    cfg.write_text('[actions]\nverify = "echo checking {task_id}; exit 1"\n')
    assert run(root, "accept", IDS["provisional"], "--yes") == 1
    err = capsys.readouterr().err
    assert f"verify| checking {IDS['provisional']}" in err and "verify command failed" in err
    assert row(root, IDS["provisional"])["queue"] == "provisional"  # type: ignore[index]
    cfg.write_text('[actions]\nverify = "test \\"$QWARDEN_TASK_ID\\" = {task_id}"\n')
    assert run(root, "accept", IDS["provisional"], "--yes") == 0
    assert row(root, IDS["provisional"])["queue"] == "done"  # type: ignore[index]


def test_unreadable_queue_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retry", "aaaa0001", "--yes", "--root", str(tmp_path / "nope")]) == 3
    assert "no such directory" in capsys.readouterr().err
    bad = tmp_path / "bad" / ".orchestrator"
    (bad / "shared" / "queue" / "incoming").mkdir(parents=True)
    (bad / "state.db").write_bytes(b"this is not sqlite" * 100)
    assert main(["retry", "aaaa0001", "--yes", "--root", str(bad)]) == 3


def test_log_before_any_action(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "log") == 0
    assert "no interventions yet" in capsys.readouterr().out


def test_split_from_the_cli(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "split", IDS["failed"], "--subtask", "First half | ctx | a; b",
               "--subtask", "Second half", "--yes") == 0
    out = capsys.readouterr().out
    assert "parent -> recycled" in out and out.count("file + shared/queue/incoming/") == 2
    assert row(root, IDS["failed"])["queue"] == "recycled"  # type: ignore[index]
    (root.parent / "qwarden.toml").write_text("[actions]\nsplit_max = 1\n")
    assert run(root, "split", IDS["zombie"], "--subtask", "a", "--subtask", "b",
               "--yes", "--force") == 1
    assert "at most 1" in capsys.readouterr().err
