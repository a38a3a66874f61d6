"""`watch --exec CMD`: a real command gets each new critical finding as JSON on stdin, at most
N runs per window (the rest in one summary run), is killed with its process group after the
timeout, never holds the watch up, and its failures are said on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwarden.core.alerts import ExecAlerts
from qwarden.core.config import AlertOptions
from qwarden.core.watch import FindingEvent
from tests.test_watch_headless import REPO, Lines, live_state


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for its (re)parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _finding(tid: str) -> dict[str, object]:
    return {"event": "finding", "task_id": tid, "kind": "zombie_claim", "severity": "critical",
            "summary": f"claim of {tid} abandoned", "title": "t", "at": "2026-12-02T10:00:00Z"}


async def test_rate_limit_holds_the_rest_for_one_summary_run(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    said: list[str] = []
    alerts = ExecAlerts(f"cat >> {out}", AlertOptions(exec_limit=2, exec_window_s=0.5,
                                                      exec_timeout_s=10), warn=said.append)
    for i in range(5):
        alerts.offer(_finding(f"0000000{i}"))
    assert alerts.runs == 2 and len(alerts.held) == 3  # offer() never waits
    while alerts.held:  # the window passes; the held three go out as one run
        await asyncio.sleep(0.05)
    await alerts.close()
    runs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert sorted(r["task_id"] for r in runs if r["event"] == "finding") == ["00000000",
                                                                             "00000001"]
    [summary] = [r for r in runs if r["event"] == "suppressed"]
    assert summary["count"] == 3
    assert [f["task_id"] for f in summary["findings"]] == ["00000002", "00000003", "00000004"]
    assert any("rate limit reached (2 per 0.5s)" in s for s in said)
    assert alerts.failures == 0


async def test_a_hung_command_is_killed_with_its_process_group(tmp_path: Path) -> None:
    child = tmp_path / "child.pid"
    said: list[str] = []
    alerts = ExecAlerts(f"sleep 30 & echo $! > {child}; wait",
                        AlertOptions(exec_timeout_s=0.5), warn=said.append)
    alerts.offer(_finding("0ab0ab01"))
    while not child.exists() or not child.read_text().strip():
        await asyncio.sleep(0.02)
    pid = int(child.read_text())
    assert not _gone(pid)
    await alerts.close()
    assert said == ["--exec timed out after 0.5s for TASK-0ab0ab01 zombie_claim: killed"]
    assert _gone(pid)  # the shell's child too: the whole group was killed


async def test_failures_are_said_on_stderr(tmp_path: Path) -> None:
    said: list[str] = []
    alerts = ExecAlerts("read line; exit 3", warn=said.append)
    alerts.offer(_finding("0ab0ab01"))
    missing = ExecAlerts(str(tmp_path / "no-such-hook"), warn=said.append)
    missing.offer(_finding("0ab0ab02"))
    await alerts.close()
    await missing.close()
    assert sorted(said) == ["--exec exited 127 for TASK-0ab0ab02 zombie_claim",
                            "--exec exited 3 for TASK-0ab0ab01 zombie_claim"]


def _config(tmp_path: Path, **alerts: float) -> Path:
    cfg = tmp_path / "q.toml"
    cfg.write_text("[alerts]\n" + "".join(f"{k} = {v}\n" for k, v in alerts.items()))
    return cfg


def test_watch_sends_each_new_critical_to_a_real_command(tmp_path: Path) -> None:
    root = live_state(tmp_path).root
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    hook = f'cat > "{inbox}/$QWARDEN_TASK_ID.$QWARDEN_KIND.json"'
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                           "watch", "--headless", "--root",
                           str(root), "--ticks", "2", "--interval", "0.3", "--exec", hook],
                          capture_output=True, text=True, cwd=REPO, timeout=90,
                          env={**os.environ, "TZ": "UTC"})
    assert proc.returncode == 2, proc.stderr
    got = {p.name: FindingEvent.model_validate_json(p.read_text())
           for p in inbox.iterdir()}
    # the two criticals, once each (the orphan is a warning; tick 2 brings nothing new)
    assert sorted(got) == ["0ab0ab01.missing_file.json", "0ab0ab02.corrupt_task.json"]
    assert all(e.severity == "critical" and e.change == "present" for e in got.values())
    assert got["0ab0ab01.missing_file.json"].evidence
    assert "--exec" not in proc.stderr  # nothing failed


def test_a_hanging_command_never_holds_the_watch_up(tmp_path: Path) -> None:
    root = live_state(tmp_path).root
    children = tmp_path / "children"
    hook = f"sleep 60 & echo $! >> {children}; wait"
    proc = subprocess.Popen([sys.executable, "-m", "qwarden.core.cli",
                             "watch", "--headless", "--root",
                             str(root), "--ticks", "3", "--interval", "0.3", "--exec", hook,
                             "--config", str(_config(tmp_path, exec_timeout_s=4))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "TZ": "UTC"})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        Lines(proc.stdout).until(" tick 3/3 ")  # every tick came while the hooks hang
        pids = [int(p) for p in children.read_text().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        assert proc.wait(timeout=60) == 2
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert err.count("--exec timed out after 4s") == 2, err
    assert all(_gone(p) for p in pids)
