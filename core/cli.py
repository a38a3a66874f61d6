"""``qwarden`` command line: the console (default), ``report``, ``watch``, ``demo``, and the
interventions. Results go to stdout, diagnostics to stderr; the TUI is imported only when used,
so the headless commands never load Textual.

Exit codes: 0 healthy, 1 warnings, 2 critical findings, 3 the queue could not be read
(interventions: 0 done, 1 refused or stale, 3 unreadable); everywhere 64 usage error and
70 internal error (``core.clihelp``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.actions.plan import Refused
from qwarden.core.clihelp import (
    EXIT_INTERNAL,
    EXIT_USAGE,
    VERDICT_EXITS,
    Parser,
    UsageError,
    add_command,
    epilog,
    scratch_dir,
)
from qwarden.core.config import Config, ConfigError, load_config
from qwarden.core.formats import FORMAT_NAMES, locate
from qwarden.core.report import EXIT_UNREADABLE, exit_code, render_json, render_text, write_json
from qwarden.core.sources.errors import SourceError
from qwarden.core.textsafe import clean_line, diagnostic
from qwarden.core.timefmt import parse_as_of


def _err(msg: str) -> None:
    print(diagnostic(msg), file=sys.stderr)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("qwarden")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


# ------------------------------------------------------------------ option types
# A bad value is a usage error (exit 64, through Parser.error), said in argparse's own words.

def _as_of_value(text: str) -> datetime:
    try:
        return parse_as_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0: {text!r}")
    return v


def _int_at_least(low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
        return v
    return convert


def _common(p: argparse.ArgumentParser, sub: bool = True) -> None:
    # Subcommands SUPPRESS their defaults so `qwarden --root X report` keeps X.
    d = argparse.SUPPRESS if sub else None
    p.add_argument("--root", default=d, help="the queue: a .orchestrator dir or its parent, "
                                             "a project holding .autonomous/, ... "
                                             "(default: $QWARDEN_ROOT, else search upwards)")
    p.add_argument("--format", default=d, choices=FORMAT_NAMES,
                   help="the queue's format (default: auto, found from the root's contents)")
    p.add_argument("--config", type=Path, default=d,
                   help="config TOML (default: qwarden.toml beside the root, "
                        "else ~/.config/qwarden/config.toml)")


def _as_of_arg(p: argparse.ArgumentParser, sub: bool = True) -> None:
    p.add_argument("--as-of", dest="as_of", metavar="ISO", type=_as_of_value,
                   default=argparse.SUPPRESS if sub else None,
                   help="judge the state at this time (no pid checks); ISO 8601, local "
                        "time unless it has an offset")


# ------------------------------------------------------------------ help texts

MAIN_DESCRIPTION = """\
Live supervision console for coding-agent task queues (Octopoid v1: .orchestrator/).

Without a COMMAND, opens the console on the queue found from --root, $QWARDEN_ROOT, or the
working directory and its parents. `qwarden COMMAND --help` describes each command."""

MAIN_EXAMPLES = """\
  qwarden                              the console on the queue found from here
  qwarden --root ~/proj --read-only    the console, refusing every intervention
  qwarden report --json | jq .status   judge once, for scripts
  qwarden watch --headless --json      follow the queue, one JSON object per change"""

REPORT_DESCRIPTION = """\
Judge the queue once and print the verdicts: the status, every finding by severity with its
evidence, the claims at risk and what to do next. Reading never writes anything.

Text goes to a terminal wrapped at its width and to a pipe unwrapped (one line per item, for
grep); --width N wraps at N columns either way. --json prints the report as one JSON object
(schema v2, described by --json-schema). Read problems (unreadable files) go to stderr."""

REPORT_EXAMPLES = """\
  qwarden report --root ~/proj
  qwarden report --all | grep zombie_claim
  qwarden report --json | jq '.findings[] | select(.severity == "critical")'
  qwarden report --as-of 2026-11-22T22:00"""

WATCH_DESCRIPTION = """\
Follow the queue live. Without --headless this is the console (as `qwarden`).

With --headless (for tmux, systemd, cron) stdout gets, as TIME CHANGE TASK-ID …:
  present   once at start, each scored finding already there
  appeared  a scored finding appeared     (… KIND SEVERITY in LANE "TITLE": SUMMARY)
  cleared   a scored finding went away    (… KIND SEVERITY in LANE "TITLE")
  severity  a finding's severity changed  (… KIND OLD -> NEW in LANE "TITLE": SUMMARY)
  lane      a task changed lane           (… FROM -> TO "TITLE"; (new) / (gone))
and one summary line per tick:
  TIME tick N/M gen=G tasks=T exit=E critical=C warning=W info=I KIND=n … next tick TIME

Ticks: tick 1 is the initial full scan, printed at once; each further tick is one full
poll, --interval seconds (default 300) after the previous one. --ticks N stops after tick
N: it makes N full passes (with --fix, N auto-fixer passes) in (N-1) x --interval seconds,
and exits with the last tick's verdict code.

--json prints each line as one JSON object instead (fields in the README, `event` first).
--exec CMD runs CMD through sh on each new critical finding, the finding's JSON object on
its stdin: at most [alerts] exec_limit runs per exec_window_s (default 6 per 60 s; the rest
go in one summary run), each killed after exec_timeout_s (default 10 s); failures and the
command's own output go to stderr. The watch never waits for it."""

WATCH_EXAMPLES = """\
  qwarden watch --headless
  qwarden watch --headless --interval 60 --ticks 3            3 full passes in 2 minutes
  qwarden watch --headless --json | jq -c 'select(.event == "finding")'
  qwarden watch --headless --exec 'curl -sS -H "Content-Type: application/json" \\
      --data-binary @- https://hooks.example.com/qwarden'
  qwarden watch --headless --fix safe --ticks 1               one auto-fix pass, then exit"""

DEMO_DESCRIPTION = """\
A simulated live queue (Octopoid v1 files and an SQLite DB) with agents working and faults
injected, opened in the console, or with --headless as a live text report. The queue lives
in a scratch directory that is removed when the demo ends (also on Ctrl-C or SIGTERM) unless
--dir is given. --generate writes a static state of N tasks with a known anomaly mix and
its truth.json instead."""

DEMO_EXAMPLES = """\
  qwarden demo
  qwarden demo --seed 7 --dir /tmp/mydemo          keep the state afterwards
  qwarden demo --headless --steps 30
  qwarden demo --generate 10000 --out /tmp/q10k
  qwarden demo --format taskapi --generate 5000 --out /tmp/tasks.db   (+ tasks.truth.json)"""

DEMO_EXITS = ("  0   the demo ended (--generate: written)\n"
              "  1   --headless: warnings at the end\n"
              "  2   --headless: critical findings at the end\n"
              "  64  usage error: unknown option, bad value, --generate without --out or "
              "with a non-empty --out\n"
              "  70  internal error (one line on stderr; QWARDEN_DEBUG=1 shows the traceback)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="qwarden", description=MAIN_DESCRIPTION,
               epilog=epilog(MAIN_EXAMPLES, VERDICT_EXITS
                             + "\n  (interventions: 0 done, 1 refused or stale, 3 unreadable)"),
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"qwarden {_version()}")
    _common(p, sub=False)
    _as_of_arg(p, sub=False)
    p.add_argument("--theme", help="qwarden-dark (default), qwarden-light, qwarden-contrast, "
                                   "or any Textual theme")
    p.add_argument("--interval", type=_positive_seconds, metavar="S",
                   help="seconds between full polls (default 300)")
    p.add_argument("--read-only", action="store_true", help="refuse every intervention")
    p.add_argument("--bell", action="store_true",
                   help="ring the terminal bell on each new critical finding (console)")
    p.add_argument("--fix", choices=("observe", "safe", "aggressive"),
                   help="run the auto-fixer after each poll (P pauses it)")
    from qwarden.core.actions.cli import add_write_path_options

    add_write_path_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    r = add_command(sub, "report", "judge the queue once and print the verdicts",
                    REPORT_DESCRIPTION, REPORT_EXAMPLES, VERDICT_EXITS)
    _common(r)
    _as_of_arg(r)
    r.add_argument("--json", action="store_true", help="machine-readable JSON (schema v2)")
    r.add_argument("--all", action="store_true", help="list every finding (text output)")
    r.add_argument("--width", type=_int_at_least(20), metavar="N",
                   help="wrap text at N columns (default: the terminal's width; a pipe or "
                        "file: no wrapping)")
    r.add_argument("--json-schema", action="store_true",
                   help="print the JSON schema of --json and exit")

    w = add_command(sub, "watch", "follow the queue; --headless: one line per change",
                    WATCH_DESCRIPTION, WATCH_EXAMPLES, VERDICT_EXITS)
    _common(w)
    w.add_argument("--headless", action="store_true",
                   help="no terminal UI: a line per change and per tick on stdout")
    w.add_argument("--interval", type=_positive_seconds, default=argparse.SUPPRESS,
                   metavar="S", help="seconds between full polls, i.e. ticks (default 300)")
    w.add_argument("--ticks", type=_int_at_least(1), metavar="N",
                   help="stop after tick N (tick 1: the initial scan, at once; then one per "
                        "--interval)")
    w.add_argument("--json", action="store_true",
                   help="one JSON object per line instead of text (--headless)")
    w.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                   help="run CMD (sh) on each new critical finding, its JSON on stdin; "
                        "rate-limited, with a timeout ([alerts] in the config)")
    w.add_argument("--fix", nargs="?", const="observe", choices=("observe", "safe",
                                                                  "aggressive"),
                   help="run the auto-fixer each tick: observe (report what it would do, the "
                        "default), safe, or aggressive; notes and metrics go to ROOT/warden/")
    w.add_argument("--read-only", dest="read_only", action="store_true",
                   default=argparse.SUPPRESS, help="the auto-fixer refuses every write")

    d = add_command(sub, "demo", "a simulated live queue (console or --headless)",
                    DEMO_DESCRIPTION, DEMO_EXAMPLES, DEMO_EXITS)
    d.add_argument("--generate", type=_int_at_least(1), metavar="N",
                   help="write a static state of N tasks (with truth.json) and exit")
    d.add_argument("--out", type=Path, help="where --generate writes (a new or empty directory)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--dir", type=Path,
                   help="keep the live demo's state here (default: a scratch dir, removed)")
    d.add_argument("--headless", action="store_true",
                   help="print the live report instead of opening the console")
    d.add_argument("--steps", type=_int_at_least(1),
                   help="stop after this many simulation steps")
    d.add_argument("--theme", default=argparse.SUPPRESS)
    d.add_argument("--format", default=argparse.SUPPRESS, choices=DEMO_FORMATS,
                   help="the simulated queue's format (default: octopoid)")

    try:
        from qwarden.core.actions.cli import add_action_commands
    except ImportError:  # interventions not installed in this build
        pass
    else:
        add_action_commands(sub)
    return p


def _load(args: argparse.Namespace) -> tuple[Path, Config]:
    """The queue's root and the config; ``args.format`` becomes the format found there."""
    info, root = locate(args.root, getattr(args, "format", None) or "auto")
    args.format = info.name
    # (a database URL has no directory beside it to hold a qwarden.toml)
    config, _ = load_config(root if isinstance(root, Path) else None, args.config)
    return root, config


def _with_interval(config: Config, interval: float | None) -> Config:
    if not interval:
        return config
    return config.model_copy(update={"live": config.live.model_copy(
        update={"poll_interval_s": interval})})


def text_console(width: int | None, stream: Any = None) -> Any:
    """The rich Console of a text report. A terminal wraps at its width; a pipe or file gets
    one unwrapped line per item (rich would otherwise wrap at 80 columns); ``--width``
    chooses."""
    from rich.console import Console

    stream = stream or sys.stdout
    if width is None and not stream.isatty():
        width = 1_000_000  # no wrapping (rich pads nothing to the width for plain lines)
    class ReportConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here ("warnings"); the reader being gone says nothing about the
            # queue: let the caller finish and return its verdict
            raise BrokenPipeError

    return ReportConsole(file=stream, width=width, highlight=False, soft_wrap=False,
                         emoji=False, no_color="NO_COLOR" in os.environ)


def cmd_report(args: argparse.Namespace) -> int:
    from qwarden.core.formats import open_engine
    from qwarden.core.report import Report

    if args.json_schema:
        import json
        print(json.dumps(Report.model_json_schema(by_alias=True), indent=2))
        return 0
    root, config = _load(args)
    # one scan, then exit
    engine = open_engine(root, config, as_of=args.as_of, follow=False, fmt=args.format)
    snap = engine.scan()
    for prob in snap.problems:
        _err(f"{clean_line(prob.path)}: {clean_line(prob.message)}")
    try:
        if args.json:
            if sys.stdout.isatty():  # indented for a person at a terminal
                sys.stdout.write(render_json(snap) + "\n")
            else:  # compact and streamed for machines, as UTF-8 bytes
                sys.stdout.flush()
                binary = getattr(sys.stdout, "buffer", None)
                if binary is not None:
                    write_json(snap, binary)
                else:  # stdout replaced by a text-only stream (an embedding's, a test's)
                    doc = io.BytesIO()
                    write_json(snap, doc)
                    sys.stdout.write(doc.getvalue().decode())
        else:
            render_text(snap, text_console(args.width), show_all=args.all)
        sys.stdout.flush()
    except BrokenPipeError:
        # `| head` read what it wanted: the verdict is still the verdict (and Python's own
        # flush at exit must not fail again and turn it into exit 1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return exit_code(snap)


# ------------------------------------------------------------------ watch

def cmd_watch(args: argparse.Namespace) -> int:
    root, config = _load(args)
    config = _with_interval(config, getattr(args, "interval", None))
    if not args.headless:
        given = [flag for flag, v in (("--ticks", args.ticks), ("--json", args.json),
                                      ("--exec", args.exec_cmd)) if v]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --headless")
        return _run_tui(root, config, None, None, None, False, fmt=args.format)
    return _run_until_interrupted(_watch_headless(root, config, args))


async def _watch_headless(root: Path, config: Config, args: argparse.Namespace) -> int:
    from qwarden.core.alerts import ExecAlerts
    from qwarden.core.formats import open_engine
    from qwarden.core.watch import (
        ChangeTracker,
        change_dict,
        change_line,
        second,
        tick_dict,
        tick_line,
        to_json_line,
    )

    as_json = bool(args.json)
    fixer = None
    if args.fix:
        from qwarden.core.actions.apply import recover
        from qwarden.core.actions.autofix import AutoFixer
        from qwarden.core.formats import autofix_refusal, locate

        why = autofix_refusal(locate(root, getattr(args, "format", None) or "auto")[0].name)
        if why is not None:
            _err(f"refused: {why}")
            return 1  # refused, as the interventions' exit code
        read_only = bool(getattr(args, "read_only", False)) or config.read_only
        if args.fix != "observe" and not read_only:
            try:
                recover(root)  # finish or undo what a killed writer left half-done, first
            except Refused as exc:  # e.g. warden/ is a symlink out of the root
                _err(f"auto-fixer: {exc}")
                return EXIT_UNREADABLE
        fixer = AutoFixer(root, config, mode=args.fix, read_only=read_only)

    stop = asyncio.Event()
    broken_pipe = False

    def emit(line: str) -> None:
        nonlocal broken_pipe
        if broken_pipe:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:  # `| head`: the reader is gone, so is the point of watching
            broken_pipe = True
            stop.set()

    engine = open_engine(root, config, fmt=args.format)
    tracker = ChangeTracker()
    alerts = ExecAlerts(args.exec_cmd, config.alerts) if args.exec_cmd else None
    shown_error: str | None = None
    shown_problems: set[tuple[str, str]] = set()

    def on_snapshot(snap) -> None:  # type: ignore[no-untyped-def]
        nonlocal shown_error
        for ch in tracker.update(snap):
            d = change_dict(ch, snap.as_of)
            emit(to_json_line(d) if as_json else change_line(ch, snap.as_of))
            if alerts is not None and ch.new_critical:
                alerts.offer(d)
        for prob in snap.problems:  # unreadable paths: each once, when first seen
            if (prob.path, prob.message) not in shown_problems:
                shown_problems.add((prob.path, prob.message))
                _err(f"{clean_line(prob.path)}: {clean_line(prob.message)}")
        if engine.last_error != shown_error:  # once per new error, not every snapshot
            shown_error = engine.last_error
            if shown_error:
                _err(clean_line(shown_error, 2000))

    def fix_pass(snap) -> list[str]:  # type: ignore[no-untyped-def]
        """The auto-fixer's pass (in a thread); its lines are printed by the loop."""
        if fixer is None or snap is None:
            return []
        try:
            rep = fixer.tick(snap)
        except Refused as exc:  # its own outputs would leave the root: say so, keep watching
            _err(f"auto-fixer: {exc}")
            return []
        if as_json:
            return [to_json_line({"event": "autofix", **rep.to_json()})]
        at = second(rep.at)
        lines = [f"{at} autofix {rep.mode}: found {sum(rep.found.values())}, fixed "
                 f"{len(rep.fixed)}, would fix {len(rep.would_fix)}, escalated "
                 f"{len(rep.escalated)}, left alone {len(rep.skipped)}"]
        for verb, items in (("fixed", rep.fixed), ("escalated", rep.escalated)):
            lines += [f"{at} autofix {verb} {item['action']} TASK-{item['task_id']} "
                      f"({item['finding']})" for item in items]
        return lines

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # (not on every platform)
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # systemd stops: end cleanly
    engine.subscribe(on_snapshot)
    tick, ticks = 1, args.ticks
    try:
        await engine.start()  # tick 1: the initial full scan, published (and printed) now
        while True:
            # Only a finished full poll moves next_poll_at, and the engine hands that poll's
            # snapshot to subscribers before it yields: once it moved, that poll's changes
            # are printed. (last_poll_at is stamped twice per poll, once from the scan's
            # thread.) A poll that ends during this tick's fixer pass is the next tick.
            polled = engine.next_poll_at
            last = ticks is not None and tick >= ticks
            snap = engine.snapshot
            if snap is not None:
                nxt = None if last else (engine.next_poll_at or snap.as_of + timedelta(
                    seconds=config.live.poll_interval_s))
                d = tick_dict(snap, tick, ticks, nxt)
                emit(to_json_line(d) if as_json else tick_line(snap, d))
            for line in await asyncio.to_thread(fix_pass, snap):  # this tick's one pass
                emit(line)
            if last:
                break
            while engine.next_poll_at == polled and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
            if stop.is_set():
                break
            tick += 1
        if broken_pipe:  # (and no second BrokenPipeError when Python flushes at exit)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        await engine.stop()
        if alerts is not None:
            await alerts.close()
    return exit_code(engine.snapshot) if engine.snapshot else EXIT_UNREADABLE


def _run_until_interrupted(coro) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(asyncio.run(coro))
    except KeyboardInterrupt:
        return 0


# ------------------------------------------------------------------ demo

DEMO_FORMATS = ("octopoid", "ralf", "coordination", "taskapi")


def cmd_demo(args: argparse.Namespace) -> int:
    fmt = getattr(args, "format", None) or "octopoid"
    if fmt not in DEMO_FORMATS:
        raise UsageError(f"demo --format: one of {', '.join(DEMO_FORMATS)}")
    if args.generate is not None:
        if args.out is None:
            raise UsageError("--generate needs --out DIR")
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UsageError(f"--out {args.out}: exists and is not empty")
        if fmt == "taskapi":
            from qwarden.core.formats.taskapi.generate import generate as generate_taskapi

            truth = generate_taskapi(args.generate, args.out, seed=args.seed)
            where = args.out if args.out.suffix == ".db" else args.out / "tasks.db"
            print(f"wrote {args.generate} tasks to {where} (truth: "
                  f"{where.parent / truth['truth_file']}, as_of {truth['as_of']})")
            return 0
        elif fmt == "ralf":
            from qwarden.core.formats.ralf.demo import generate as generate_ralf

            truth = generate_ralf(args.generate, args.out, seed=args.seed)
            where = args.out / ".autonomous"
        elif fmt == "coordination":
            from qwarden.core.formats.coordination.generate import generate as generate_coord

            truth = generate_coord(args.generate, args.out, seed=args.seed)
            where = args.out
        else:
            from qwarden.core.formats.octopoid.generate import generate

            truth = generate(args.out, args.generate, seed=args.seed)
            where = args.out / ".orchestrator"
        print(f"wrote {args.generate} tasks to {where} (truth.json: as_of {truth['as_of']})")
        return 0

    with scratch_dir("qwarden-demo-", keep=args.dir) as base:
        sim: Any
        if fmt == "taskapi":
            from qwarden.core.formats.taskapi.simulate import Simulation as TaskApiSimulation

            root = Path(base) / "tasks.db"
            sim = TaskApiSimulation(root, seed=args.seed)
        elif fmt == "ralf":
            from qwarden.core.formats.ralf.demo import Simulation as RalfSimulation

            root = Path(base) / "project"
            sim = RalfSimulation(root, seed=args.seed)
        elif fmt == "coordination":
            from qwarden.core.formats.coordination.simulate import Simulation as CoordSimulation

            root = Path(base) / "coordination"
            sim = CoordSimulation(root, seed=args.seed)
        else:
            from qwarden.core.formats.octopoid.simulate import Simulation, create_demo_root

            root = create_demo_root(base, seed=args.seed)
            sim = Simulation(root, seed=args.seed)
        print(f"qwarden demo: simulated queue at {root} ({fmt})"
              + ("" if args.dir else " (removed when the demo ends; --dir keeps it)"),
              file=sys.stderr, flush=True)
        config, _ = load_config(root, None)
        if not args.headless:
            # a simulated queue in a scratch dir: a database queue is written directly (there
            # is no API server to act through), journaled and undoable as ever
            return _run_tui(root, config, None, args.theme, sim, False, fmt=fmt,
                            write_options={"direct_db": True})
        return _demo_headless(root, config, sim, args.steps, fmt)


def _demo_headless(root: Path, config: Config, sim, steps: int | None,  # type: ignore[no-untyped-def]
                   fmt: str = "octopoid") -> int:
    from rich.console import Console
    from rich.live import Live

    from qwarden.core.formats import open_engine
    from qwarden.core.report import render_group

    async def main() -> int:
        engine = open_engine(root, config, fmt=fmt)
        stop = asyncio.Event()
        console = Console()
        await engine.start()
        sim_task = asyncio.create_task(sim.run(stop))
        try:
            with Live(render_group(engine.snapshot), console=console,  # type: ignore[arg-type]
                      refresh_per_second=2, transient=False) as live:
                n = 0
                while steps is None or n < steps:
                    await asyncio.sleep(sim.tick_s)
                    n += 1
                    if engine.snapshot is not None:
                        live.update(render_group(engine.snapshot))
        finally:
            stop.set()
            await sim_task
            await engine.stop()
        return exit_code(engine.snapshot) if engine.snapshot else EXIT_UNREADABLE

    return _run_until_interrupted(main())


def _run_tui(root: Path, config: Config, as_of: datetime | None, theme: str | None,
             simulation, read_only: bool,  # type: ignore[no-untyped-def]
             fix: str | None = None, bell: bool = False, fmt: str = "auto",
             write_options: dict[str, Any] | None = None) -> int:
    try:
        from qwarden.tui.app import run_tui
    except ImportError as exc:
        _err(f"the console is not available: {exc}")
        return EXIT_UNREADABLE
    if read_only:
        config = config.model_copy(update={"read_only": True})
    return run_tui(root, config, as_of, theme, simulation, fix, bell=bell, fmt=fmt,
                   write_options=write_options)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (64)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "report":
            return cmd_report(args)
        if args.command == "watch":
            return cmd_watch(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command is not None:
            from qwarden.core.actions.cli import run_action_command
            return run_action_command(args)
        root, config = _load(args)
        config = _with_interval(config, args.interval)
        from qwarden.core.actions.cli import write_options

        return _run_tui(root, config, args.as_of, args.theme, None, args.read_only, args.fix,
                        bell=args.bell, fmt=args.format, write_options=write_options(args))
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except SourceError as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line, not a traceback (unless asked for)
        if os.environ.get("QWARDEN_DEBUG") == "1":
            raise
        _err(f"internal error: {clean_line(repr(exc), 500)} (QWARDEN_DEBUG=1 shows the "
             "traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
