"""What every ``qwarden`` subcommand shares on the command line: the usage-error exit code, the
parser that uses it, and the help layout (a description, examples, the exit codes).

argparse's own ``error()`` exits 2, which is also "critical findings" for ``report`` and
``watch``: a script could not tell a typo from an alarm. Usage errors exit 64 (EX_USAGE of
sysexits.h) instead, everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 64  # bad option or value, missing required option (sysexits EX_USAGE)
EXIT_INTERNAL = 70  # an unexpected exception (sysexits EX_SOFTWARE)

_COMMON_EXITS = ("  64  usage error: unknown option, bad value (e.g. --as-of), missing required "
                 "option\n"
                 "  70  internal error (one line on stderr; QWARDEN_DEBUG=1 shows the traceback)")
VERDICT_EXITS = ("  0   healthy\n  1   warnings\n  2   critical findings\n"
                 "  3   the queue could not be read\n" + _COMMON_EXITS)
ACTION_EXITS = ("  0   done (or the --dry-run plan shown)\n"
                "  1   refused, stale (the task changed meanwhile) or not confirmed\n"
                "  3   the queue could not be read\n" + _COMMON_EXITS)
PLAIN_EXITS = "  0   done\n  3   the queue could not be read\n" + _COMMON_EXITS


class UsageError(Exception):
    """A bad combination of options found after parsing; exits ``EXIT_USAGE``."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 64, not 2. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def epilog(examples: str, exits: str) -> str:
    return f"examples:\n{examples.rstrip()}\n\nexit codes:\n{exits}\n"


def add_command(subparsers: Any, name: str, summary: str, description: str, examples: str,
                exits: str) -> argparse.ArgumentParser:
    """One subcommand with the layout every ``--help`` follows: the one-line summary in the
    parent's list, then its description, examples and exit codes (kept as written)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description, epilog=epilog(examples, exits),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return p


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so ``finally`` blocks run (a scratch
    dir is removed); the previous handler comes back afterwards."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """``keep``, left in place; else a new temporary directory that is removed on the way out,
    whichever way that is (normal end, exception, Ctrl-C, SIGTERM)."""
    if keep is not None:
        yield Path(keep)
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with sigterm_unwinds():
            yield path
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    # A simulation thread still writing while the removal runs can leave an entry behind:
    # look again briefly.
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    print(f"qwarden: could not remove the scratch directory {path}", file=sys.stderr)
