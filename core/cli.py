"""``qwarden`` command line: the console (default), ``report``, ``watch``, ``demo``, and the
interventions. Results go to stdout, diagnostics to stderr; the TUI is imported only when used,
so the headless commands never load Textual.

Exit codes: 0 healthy, 1 warnings, 2 critical findings, 3 the queue could not be read
(interventions: 0 done, 1 refused or stale, 3 unreadable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from core.config import Config, ConfigError, load_config
from core.report import EXIT_UNREADABLE, exit_code, render_json, render_text, write_json
from core.sources.octopoid import SourceError, resolve_root
from core.timefmt import parse_as_of


def _err(msg: str) -> None:
    print(f"qwarden: {msg}", file=sys.stderr)


def _common(p: argparse.ArgumentParser, sub: bool = True) -> None:
    # Subcommands SUPPRESS their defaults so `qwarden --root X report` keeps X.
    d = argparse.SUPPRESS if sub else None
    p.add_argument("--root", default=d, help="the .orchestrator dir or its parent "
                                             "(default: $QWARDEN_ROOT, else search upwards)")
    p.add_argument("--config", type=Path, default=d,
                   help="config TOML (default: qwarden.toml beside the root, "
                        "else ~/.config/qwarden/config.toml)")


def _as_of_arg(p: argparse.ArgumentParser, sub: bool = True) -> None:
    p.add_argument("--as-of", dest="as_of", metavar="ISO",
                   default=argparse.SUPPRESS if sub else None,
                   help="judge the state at this time (no pid checks); ISO 8601, local "
                        "time unless it has an offset")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qwarden", description="Live supervision console for coding-agent task queues.")
    _common(p, sub=False)
    _as_of_arg(p, sub=False)
    p.add_argument("--theme", help="qwarden-dark (default), qwarden-light, qwarden-contrast, "
                                   "or any Textual theme")
    p.add_argument("--interval", type=float, help="seconds between full polls (default 300)")
    p.add_argument("--read-only", action="store_true", help="refuse every intervention")
    p.add_argument("--bell", action="store_true",
                   help="ring the terminal bell on each new critical finding (console)")
    p.add_argument("--fix", choices=("observe", "safe", "aggressive"),
                   help="run the auto-fixer after each poll (P pauses it)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("report", help="judge the queue once and print the verdicts")
    _common(r)
    _as_of_arg(r)
    r.add_argument("--json", action="store_true", help="machine-readable JSON (schema v1)")
    r.add_argument("--all", action="store_true", help="list every finding (text output)")
    r.add_argument("--json-schema", action="store_true",
                   help="print the JSON schema of --json and exit")

    w = sub.add_parser("watch", help="follow the queue and print what changes")
    _common(w)
    w.add_argument("--headless", action="store_true",
                   help="no terminal UI: print a report line per change and each poll")
    w.add_argument("--interval", type=float, default=argparse.SUPPRESS,
                   help="seconds between full polls (default 300)")
    w.add_argument("--ticks", type=int, help="stop after this many polls (for scripts)")
    w.add_argument("--fix", nargs="?", const="observe", choices=("observe", "safe",
                                                                  "aggressive"),
                   help="run the auto-fixer each poll: observe (report what it would do, the "
                        "default), safe, or aggressive; notes and metrics go to ROOT/warden/")
    w.add_argument("--read-only", dest="read_only", action="store_true",
                   default=argparse.SUPPRESS, help="the auto-fixer refuses every write")

    d = sub.add_parser("demo", help="a simulated live queue on an embedded SQLite DB")
    d.add_argument("--generate", type=int, metavar="N",
                   help="write a static state of N tasks (with truth.json) and exit")
    d.add_argument("--out", type=Path, help="where --generate writes (a new directory)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--dir", type=Path, help="keep the live demo's state here (default: temp)")
    d.add_argument("--headless", action="store_true",
                   help="print the live report instead of opening the console")
    d.add_argument("--steps", type=int, help="stop after this many simulation steps")
    d.add_argument("--theme", default=argparse.SUPPRESS)

    try:
        from core.actions.cli import add_action_commands
    except ImportError:  # interventions not installed in this build
        pass
    else:
        add_action_commands(sub)
    return p


def _load(args: argparse.Namespace) -> tuple[Path, Config]:
    root = resolve_root(args.root)
    config, _ = load_config(root, args.config)
    return root, config


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from core.engine import Engine
    from core.report import Report

    if args.json_schema:
        import json
        print(json.dumps(Report.model_json_schema(by_alias=True), indent=2))
        return 0
    root, config = _load(args)
    as_of = parse_as_of(args.as_of) if args.as_of else None
    engine = Engine(root, config, as_of=as_of, follow=False)  # one scan, then exit
    snap = engine.scan()
    for prob in snap.problems:
        _err(f"{prob.path}: {prob.message}")
    if args.json:
        if sys.stdout.isatty():  # indented for a person at a terminal
            sys.stdout.write(render_json(snap) + "\n")
        else:  # compact and streamed for machines
            write_json(snap, sys.stdout)
    else:
        console = Console(highlight=False, soft_wrap=False, emoji=False,
                          no_color="NO_COLOR" in os.environ)
        render_text(snap, console, show_all=args.all)
    return exit_code(snap)


def cmd_watch(args: argparse.Namespace) -> int:
    from core.engine import Engine

    root, config = _load(args)
    if args.interval:
        config = config.model_copy(update={"live": config.live.model_copy(
            update={"poll_interval_s": args.interval})})
    if not args.headless:
        return _run_tui(root, config, None, None, None, False)

    fixer = None
    if args.fix:
        from core.actions.apply import recover
        from core.actions.autofix import AutoFixer
        read_only = bool(getattr(args, "read_only", False)) or config.read_only
        if args.fix != "observe" and not read_only:
            recover(root)  # finish or undo what a killed writer left half-done, first
        fixer = AutoFixer(root, config, mode=args.fix, read_only=read_only)

    def fix_tick(snap) -> None:  # type: ignore[no-untyped-def]
        if fixer is None or snap is None:
            return
        rep = fixer.tick(snap)
        print(f"autofix {rep.mode}: found {sum(rep.found.values())}, fixed {len(rep.fixed)}, "
              f"would fix {len(rep.would_fix)}, escalated {len(rep.escalated)}, "
              f"left alone {len(rep.skipped)}", flush=True)
        for item in rep.fixed + rep.escalated:
            print(f"  {item['action']} TASK-{item['task_id']} ({item['finding']})", flush=True)

    async def main() -> int:
        engine = Engine(root, config)
        polls = 0
        done = asyncio.Event()
        last_line = ""

        def on_snapshot(snap) -> None:  # type: ignore[no-untyped-def]
            nonlocal last_line, polls
            from collections import Counter
            kinds = Counter(f.kind for f in snap.findings if f.scored)
            line = (f"{snap.as_of:%Y-%m-%dT%H:%M:%SZ} gen={snap.generation} "
                    f"tasks={len(snap.tasks)} exit={exit_code(snap)} "
                    + " ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
            if line.split(" ", 2)[2] != last_line.split(" ", 2)[2] if last_line else True:
                print(line, flush=True)
            last_line = line
            if engine.last_error:
                _err(engine.last_error)

        engine.subscribe(on_snapshot)
        await engine.start()
        await asyncio.to_thread(fix_tick, engine.snapshot)
        try:
            while not done.is_set():
                before = engine.last_poll_at
                await asyncio.sleep(0.5)
                if engine.last_poll_at != before:
                    polls += 1
                    await asyncio.to_thread(fix_tick, engine.snapshot)
                    if args.ticks and polls >= args.ticks:
                        break
        finally:
            await engine.stop()
        return exit_code(engine.snapshot) if engine.snapshot else EXIT_UNREADABLE

    return _run_until_interrupted(main())


def _run_until_interrupted(coro) -> int:  # type: ignore[no-untyped-def]
    try:
        return int(asyncio.run(coro))
    except KeyboardInterrupt:
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.generate is not None:
        from core.demo.generate import generate

        if args.out is None:
            _err("--generate needs --out DIR")
            return 2
        if args.out.exists() and any(args.out.iterdir()):
            _err(f"{args.out}: exists and is not empty")
            return 2
        truth = generate(args.out, args.generate, seed=args.seed)
        print(f"wrote {args.generate} tasks to {args.out / '.orchestrator'} "
              f"(truth.json: as_of {truth['as_of']})")
        return 0

    from core.demo.simulate import Simulation, create_demo_root

    base = args.dir or Path(tempfile.mkdtemp(prefix="qwarden-demo-"))
    root = create_demo_root(base, seed=args.seed)
    print(f"qwarden demo: simulated queue at {root}", file=sys.stderr)
    sim = Simulation(root, seed=args.seed)
    config, _ = load_config(root, None)
    if not args.headless:
        return _run_tui(root, config, None, args.theme, sim, False)
    return _demo_headless(root, config, sim, args.steps)


def _demo_headless(root: Path, config: Config, sim, steps: int | None) -> int:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.live import Live

    from core.engine import Engine
    from core.report import render_group

    async def main() -> int:
        engine = Engine(root, config)
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
             fix: str | None = None, bell: bool = False) -> int:
    try:
        from tui.app import run_tui
    except ImportError as exc:
        _err(f"the console is not available: {exc}")
        return EXIT_UNREADABLE
    if read_only:
        config = config.model_copy(update={"read_only": True})
    return run_tui(root, config, as_of, theme, simulation, fix, bell=bell)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return cmd_report(args)
        if args.command == "watch":
            return cmd_watch(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command is not None:
            from core.actions.cli import run_action_command
            return run_action_command(args)
        root, config = _load(args)
        if args.interval:
            config = config.model_copy(update={"live": config.live.model_copy(
                update={"poll_interval_s": args.interval})})
        as_of = parse_as_of(args.as_of) if args.as_of else None
        return _run_tui(root, config, as_of, args.theme, None, args.read_only, args.fix,
                        bell=args.bell)
    except SourceError as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_UNREADABLE
    except ValueError as exc:  # bad --as-of and the like
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
