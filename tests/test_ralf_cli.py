"""RALF through the command line, as an operator runs it: generate, report, demo, sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qwarden.core.cli import main

REPO = Path(__file__).resolve().parent.parent


def _qwarden(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwarden.core.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_a_generated_state_is_found_by_auto_and_scored_exactly(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert main(["demo", "--format", "ralf", "--generate", "200", "--out", str(out),
                 "--seed", "3"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    proc = _qwarden("report", "--root", str(out), "--as-of", truth["as_of"], "--json")
    assert proc.returncode in (1, 2), proc.stderr  # warnings or criticals, not unreadable
    data = json.loads(proc.stdout)
    assert data["format"] == "ralf" and data["schema_version"] == 2
    got: dict[str, set[str]] = {}
    for f in data["findings"]:
        assert f["subject"] == f["task_id"]
        if f["scored"]:
            got.setdefault(f["subject"], set()).add(f["kind"])
    want = {s: set(k) for s, k in truth["tasks"].items() if k}
    assert got == want


def test_the_live_demo_runs_headless_and_ends(tmp_path: Path) -> None:
    proc = _qwarden("demo", "--format", "ralf", "--headless", "--steps", "3",
                    "--dir", str(tmp_path / "d"))
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "simulated queue at" in proc.stderr and "(ralf)" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (tmp_path / "d" / "project" / ".autonomous" / "communications" / "queue.yaml").is_file()


def test_sync_dry_run_then_sync_then_undo_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert main(["demo", "--format", "ralf", "--generate", "60", "--out", str(out)]) == 0
    queue = next(out.rglob("queue.yaml"))
    before = queue.read_bytes()
    dry = _qwarden("sync", "--root", str(out), "--dry-run")
    assert dry.returncode == 0 and "+++ b/" in dry.stdout
    assert queue.read_bytes() == before  # a dry run writes nothing
    assert _qwarden("sync", "--root", str(out), "--yes").returncode == 0
    assert queue.read_bytes() != before
    assert _qwarden("undo", "--root", str(out), "--yes").returncode == 0
    assert queue.read_bytes() == before
    refused = _qwarden("retry", "TASK-1", "--root", str(out))
    assert refused.returncode == 1 and "refused" in refused.stderr


def test_the_layers_hold() -> None:
    """import-linter's contracts (pyproject.toml): the core never imports the console, the
    judging layers read no source or format, the engine knows no format."""
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
