"""Work on more than one core: a function run in a forked child that sends its result back
as bytes (``Forked``), or the same function over parts of the work (``fork_map``).

Used where a scan at 100,000 files is bound by per-file work one Python thread cannot spread:
the first read of the task files (a worker reads part of every queue dir while this process
reads the DB) and the one ``stat`` per file of a warm reconciliation. A child only runs the
given function and ``os._exit``s: no atexit handlers, no flushing of inherited buffers. It
builds its own objects and touches few of the parent's, so little memory is copied on write.
Whatever goes wrong in a child (it dies, hangs past the deadline, sends a short answer) costs
only time: its part comes back as None and the caller computes it in-process.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Python 3.12+ warns about fork() in a process with threads (a console has some). The child
# here touches no lock another thread could hold: it stats, hashes and writes to a pipe.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__,
                        message=r".*fork\(\).*")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class Forked:
    """One function running in a forked child; ``result`` waits for its bytes."""

    def __init__(self, fn: Callable[[], bytes]) -> None:
        self._child = [-1, -1]  # [pid, read end]; -1 once reaped / closed
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return  # no child: result() is None, the caller does the work itself
        if pid == 0:  # the child: compute, send, leave without any cleanup
            code = 1
            try:
                os.close(r)
                _write_all(w, fn())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self._child = [pid, r]

    def result(self, timeout: float = 30.0) -> memoryview | None:
        """The child's bytes; None if it failed, could not start or took past ``timeout``."""
        if self._child[0] < 0:
            return None
        return _collect(self._child, time.monotonic() + timeout)

    def abandon(self) -> None:
        """Stop the child if it still runs, and reap it."""
        if self._child[1] >= 0:
            os.close(self._child[1])
            self._child[1] = -1
        if self._child[0] > 0:
            _kill(self._child[0])
            _reap(self._child)


def fork_map(fn: Callable[[T], bytes], parts: Sequence[T], timeout: float = 30.0
             ) -> list[bytes | memoryview | None]:
    """``[fn(p) for p in parts]``, with ``parts[1:]`` computed in forked children while this
    process computes ``parts[0]``. A child's part is None when it failed; ``parts[0]``'s
    result is never None (an exception in it propagates as usual)."""
    if not parts:
        return []
    if len(parts) == 1 or not can_fork():
        return [fn(p) for p in parts]
    children: list[Forked] = []
    try:
        for part in parts[1:]:
            children.append(Forked(lambda part=part: fn(part)))  # type: ignore[misc]
        out: list[bytes | memoryview | None] = [fn(parts[0])]
        deadline = time.monotonic() + timeout
        for child in children:
            out.append(child.result(max(0.0, deadline - time.monotonic())))
        return out
    finally:
        for child in children:  # only after an exception: stop and reap what is left
            child.abandon()


def _write_all(fd: int, data: bytes) -> None:
    # length first, so a child that died half-way is told from one that finished
    for part in (len(data).to_bytes(8, "little"), data):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(child: list[int]) -> int:
    try:
        _, status = os.waitpid(child[0], 0)
    except ChildProcessError:
        status = 1
    child[0] = -1
    return status


def _collect(child: list[int], deadline: float) -> memoryview | None:
    pid, r = child
    chunks: list[bytes] = []
    ok = True
    poller = select.poll()  # (not select(): fds above 1023 are fine)
    poller.register(r, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            ok = False  # hung: give up on it, the caller does the part itself
            _kill(pid)
            break
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    child[1] = -1
    status = _reap(child)
    if not ok or status != 0:
        return None
    data = b"".join(chunks)
    del chunks
    if len(data) < 8 or int.from_bytes(data[:8], "little") != len(data) - 8:
        return None
    return memoryview(data)[8:]  # (no copy of what may be megabytes)
