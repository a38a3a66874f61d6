"""Config discovery, thresholds flowing into verdicts, pid checks only live, `watch --headless`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from qwarden.core.config import Config, ConfigError, load_config
from qwarden.core.formats import open_engine
from qwarden.core.timefmt import parse_as_of
from tests.builders import StateBuilder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def test_config_beside_root_wins_and_thresholds_apply(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    b = StateBuilder(tmp_path)
    b.task("t1", db_queue="claimed", trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 2700)],
           db={"claimed_by": "a1", "claimed_at": 2700})
    b.agent("a1", started_age=2700, heartbeat_age=840)
    root = b.build()
    assert load_config(root) == (Config(), None)
    (tmp_path / "xdg" / "qwarden").mkdir(parents=True)
    (tmp_path / "xdg" / "qwarden" / "config.toml").write_text(
        "[thresholds]\nzombie_after_s = 100000\n")
    (tmp_path / "qwarden.toml").write_text("[thresholds]\nzombie_after_s = 600\n")
    cfg, path = load_config(root)
    assert path == tmp_path / "qwarden.toml" and cfg.thresholds.zombie_after_s == 600
    snap = open_engine(root, cfg, as_of=parse_as_of(b.now.isoformat())).scan()
    assert {f.kind for f in snap.findings_for("t1")} == {"zombie_claim"}  # 14 min > 10 min
    (tmp_path / "qwarden.toml").write_text("[thresholds]\nno_such_key = 1\n")
    with pytest.raises(ConfigError, match=r"qwarden\.toml"):
        load_config(root)


def test_dead_pid_counts_only_on_the_live_machine(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that certainly is not alive any more
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("t1", db_queue="claimed", trail=[("CLAIMED_BY", "a1"), ("CLAIMED_AT", 900)],
           db={"claimed_by": "a1", "claimed_at": 900})
    b.agent("a1", started_age=900, heartbeat_age=400, pid=proc.pid)
    root = b.build()
    live = open_engine(root).scan()
    assert {f.kind for f in live.findings_for("t1")} == {"zombie_claim"}
    assert any("not alive" in e.value for e in live.verdicts["t1"].evidence)
    judged_then = open_engine(root, as_of=parse_as_of(datetime.now().isoformat())).scan()
    assert {f.kind for f in judged_then.findings_for("t1")} == {"stale_heartbeat"}


def test_watch_headless_prints_and_stops_after_ticks(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("t1", db_queue=None)
    root = b.build()
    proc = subprocess.run(
        [sys.executable, "-m", "qwarden.core.cli", "watch", "--headless", "--root", str(root),
         "--interval", "0.5", "--ticks", "2"], capture_output=True, text=True, cwd=REPO,
        timeout=60, env={**os.environ, "TZ": "UTC"})
    assert proc.returncode == 1, proc.stderr  # an orphan file is a warning
    assert "orphan_file=1" in proc.stdout and "tasks=1" in proc.stdout


def test_watch_headless_safe_fix_repairs_an_orphan(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path, now=datetime.now())
    b.task("0ab0ab01", db_queue=None)
    root = b.build()
    proc = subprocess.run(
        [sys.executable, "-m", "qwarden.core.cli", "watch", "--headless", "--root", str(root),
         "--interval", "0.5", "--ticks", "2", "--fix", "safe"], capture_output=True, text=True,
        cwd=REPO, timeout=90, env={**os.environ, "TZ": "UTC"})
    assert "autofix safe:" in proc.stdout and "register TASK-0ab0ab01" in proc.stdout, (
        proc.stdout, proc.stderr)
    assert (root / "warden" / "metrics.prom").is_file()
    after = open_engine(root).scan()
    assert "0ab0ab01" in after.tasks and after.tasks["0ab0ab01"].record is not None
    assert not after.findings_for("0ab0ab01")
