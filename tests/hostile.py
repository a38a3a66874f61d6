"""Helpers for the hostile-input tests: a deadline that turns a hang into a failure, and an
exact picture of a directory tree (to prove nothing was written, created or removed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Hang(Exception):
    """The code under test did not return before its deadline."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` in the main thread if the block runs longer than ``seconds`` (a blocked
    ``open`` of a FIFO is interrupted: the signal handler raises)."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def memory_cap(extra: int = 512 * 1024 * 1024) -> Iterator[None]:
    """Cap this process's address space at its current size + ``extra`` for the block: an
    unbounded read (of /dev/zero, say) fails with MemoryError instead of eating the machine."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def crashed_writer(db: Path, statement: str) -> None:
    """What a writer killed mid-life leaves: a -wal holding one committed ``statement``, and
    no -shm (the shared memory is gone with the process)."""
    code = ("import os, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
            "c.execute(sys.argv[2])\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(db), statement], check=True)
    Path(f"{db}-shm").unlink()
    assert Path(f"{db}-wal").stat().st_size > 0


def tree(base: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``base`` (not following links): its type, and for a regular file its
    size, mtime and sha256, for a link its target. Two equal trees: nothing was written,
    created, removed or touched (mtime) there."""
    out: dict[str, tuple[Any, ...]] = {}
    for dp, dns, fns in os.walk(base, followlinks=False):
        for name in dns + fns:
            p = os.path.join(dp, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, base)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mtime_ns)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode), st.st_mtime_ns)
    return out
