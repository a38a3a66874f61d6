"""The command line's conventions: --version, a description, examples and exit codes in every
--help, usage errors exit 64 (never 2, which is "critical findings"), an unexpected exception
exits 70 in one line, `report` unwrapped in a pipe (--width to choose), and the demo leaving
no scratch directory behind."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from qwarden.core import cli
from qwarden.core.cli import build_parser, main
from tests.builders import StateBuilder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"qwarden {version('qwarden')}"


def test_every_help_has_a_description_an_example_and_the_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    commands = _subcommands()
    assert {"report", "watch", "demo", "cancel", "retry", "undo", "log"} <= set(commands)
    for name in [None, *commands]:
        assert main(([name] if name else []) + ["--help"]) == 0
        out = capsys.readouterr().out
        body = out.split("\n\n", 1)[1]  # what follows the usage lines
        assert not body.startswith("options:"), f"{name}: no description"
        examples = out.split("examples:\n", 1)[1].split("\n\n", 1)[0]
        assert f"qwarden {name or ''}".strip() in examples, name
        codes = out.split("exit codes:\n", 1)[1]
        assert "  0 " in codes and "  64  usage error" in codes and "  70 " in codes, name
        if name in ("report", "watch", None):
            assert "  2   critical findings" in codes and "  3   the queue could not" in codes
        if name in ("cancel", "retry", "undo"):
            assert "  1   refused" in codes
    assert main(["watch", "--help"]) == 0
    watch_help = capsys.readouterr().out
    assert "tick 1 is the initial full scan, printed at once" in watch_help


@pytest.mark.parametrize("argv, needle", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["report", "--as-of", "yesterday-ish"], "not an ISO 8601 time"),
    (["--as-of", "2026-13-45"], "not an ISO 8601 time"),
    (["report", "--width", "5"], "at least 20"),
    (["watch", "--headless", "--ticks", "0"], "at least 1"),
    (["watch", "--headless", "--interval", "nan"], "seconds > 0"),
    (["watch", "--headless", "--interval", "-1"], "seconds > 0"),
    (["cancel", "0ab0ab01", "--yes"], "the following arguments are required: --note"),
    (["retry"], "required: TASK_ID"),
    (["demo", "--generate", "5"], "--generate needs --out"),
])
def test_usage_errors_exit_64(argv: list[str], needle: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    b = StateBuilder(tmp_path)
    b.task("t1")
    root = b.build()
    assert main([*argv, "--root", str(root)] if argv[0] != "demo" else argv) == 64
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_headless_only_options_without_headless_are_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = StateBuilder(tmp_path)
    b.task("t1")
    root = b.build()
    assert main(["watch", "--ticks", "2", "--json", "--root", str(root)]) == 64
    assert "--ticks, --json: only with --headless" in capsys.readouterr().err


def test_an_unexpected_exception_exits_70_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_report", broken)
    monkeypatch.delenv("QWARDEN_DEBUG", raising=False)
    assert main(["report"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError('a bug')" in err
    monkeypatch.setenv("QWARDEN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["report"])


def _long_line_state(tmp_path: Path) -> Path:
    b = StateBuilder(tmp_path)
    b.task("0ab0ab01", db_queue=None, title="An orphan task whose title is long enough to "
           "matter when the report is piped into grep")
    return b.build()


def _report(root: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root", str(root),
                           "--as-of", "2026-11-22T22:10:00", *extra], capture_output=True,
                          text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "TZ": "UTC", "COLUMNS": "80"})
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


def test_report_in_a_pipe_does_not_wrap_and_width_chooses(tmp_path: Path) -> None:
    root = _long_line_state(tmp_path)
    out = _report(root)
    line = next(ln for ln in out.splitlines() if "0ab0ab01 An orphan" in ln)
    # the task, its title and its summary on one line, whole (it was cut at 80 columns)
    assert line.endswith("TASK-0ab0ab01.md has no DB row") and len(line) > 80
    assert any("CRITICAL" in ln or "WARNING" in ln for ln in out.splitlines())
    narrow = _report(root, "--width", "40")
    assert max(len(ln) for ln in narrow.splitlines()) <= 40
    assert "0ab0ab01" in narrow


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_a_reader_that_stops_early_does_not_change_the_exit_code(tmp_path: Path,
                                                                 fmt: list[str]) -> None:
    # `qwarden report | head -c 1`: the verdict is critical (a corrupt file) and stays so;
    # the closed pipe is no "warnings" (rich exits 1 on it)
    root = _long_line_state(tmp_path)
    cmd = (f"{sys.executable} -m qwarden.core.cli report --root {root} --as-of 2026-11-22T22:10:00 "
           f"{' '.join(fmt)} | head -c 1 > /dev/null; exit ${{PIPESTATUS[0]}}")
    (root / "shared" / "queue" / "incoming" / "TASK-c0c0c0c0.md").write_bytes(b"\x00bad")
    for i in range(300):  # enough output to outgrow the pipe
        (root / "shared" / "queue" / "incoming" / f"TASK-{i:08x}.md").write_text(
            f"# [TASK-{i:08x}] orphan {i}\n\nROLE: x\n" + "x" * 200 + "\n")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=REPO,
                          timeout=60, env={**os.environ, "TZ": "UTC"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_text_console_wraps_a_terminal_at_its_width() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

        def write(self, s: str) -> int:
            return len(s)

        def flush(self) -> None:
            pass

    assert cli.text_console(None, Tty()).width == cli.text_console(None, Tty()).size.width
    assert cli.text_console(50, Tty()).width == 50
    assert cli.text_console(None, open(os.devnull, "w")).width >= 100_000


# ------------------------------------------------------------------ demo scratch dirs

def _demo_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp), "TZ": "UTC", "PYTHONPATH": str(REPO)}


def test_demo_leaves_no_scratch_dir_unless_dir_is_given(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                           "demo", "--headless", "--steps",
                           "2"], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=_demo_env(tmp))
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "qwarden-demo-" in proc.stderr and "removed when the demo ends" in proc.stderr
    assert list(tmp.iterdir()) == []
    kept = tmp_path / "kept"
    proc = subprocess.run([sys.executable, "-m", "qwarden.core.cli",
                           "demo", "--headless", "--steps",
                           "1", "--dir", str(kept)], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env=_demo_env(tmp))
    assert (kept / ".orchestrator" / "state.db").is_file() and list(tmp.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_removes_its_scratch_dir(tmp_path: Path, sig: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "qwarden.core.cli", "demo", "--headless"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=_demo_env(tmp_path))
    try:
        assert proc.stderr is not None
        assert "simulated queue at" in proc.stderr.readline()
        assert [p.name[:13] for p in tmp_path.iterdir()] == ["qwarden-demo-"]
        time.sleep(1.0)  # the simulation and the engine are running
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []


def test_a_demo_that_crashes_removes_its_scratch_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[Path] = []

    def console(root: Path, *a: object, **kw: object) -> int:
        seen.append(root)
        assert (root / "state.db").is_file()
        raise RuntimeError("the console crashed")

    monkeypatch.setattr(cli, "_run_tui", console)
    assert main(["demo"]) == 70
    assert seen and seen[0].is_relative_to(tmp_path)
    assert list(tmp_path.iterdir()) == []
