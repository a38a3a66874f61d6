"""The advisory lock every writer of task-queue.json takes, and the atomic replace.

The design says "use file locks or atomic writes for queue updates" and names no lock, so
qwarden defines one and documents it (README): ``fcntl.flock(fd, LOCK_EX)`` on
``task-queue.json.lock`` beside the queue, held for the whole read-modify-write; the write
is a temp file in the same directory, fsync, ``os.replace``, fsync of the directory. A
worker that follows the same protocol can never lose a claim to qwarden or qwarden a write
to it; one that does not is what ``corrupt_queue_file`` and ``lost_claim`` find. An flock
dies with its process, so a killed writer never leaves the queue locked.

Also the span reader qwarden's edits use: the byte ranges of the array's entries, so an
edit replaces only the entries it changes (every other entry keeps its bytes, and an undo
is the same splice backwards, byte-identical).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qwarden.core import atomicfile
from qwarden.core.formats.coordination import layout
from qwarden.core.safeio import check_inside


class LockTimeout(OSError):
    def __init__(self, path: Path, waited: float) -> None:
        super().__init__(errno.EAGAIN, f"{path.name} is held by another writer "
                         f"(waited {waited:.1f} s)", str(path))


@contextmanager
def queue_lock(root: Path, timeout_s: float = 10.0) -> Iterator[None]:
    """Hold ``ROOT/task-queue.json.lock`` exclusively (raises ``LockTimeout``)."""
    check_inside(root, layout.LOCK)
    path = root / layout.LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout_s:
                    raise LockTimeout(path, waited) from None
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, tag: str = "qw") -> None:
    """The queue's replace (``atomicfile.write_atomic``; the temp name carries the pid, so two
    writers never share one). The mode of the file it replaces is kept."""
    atomicfile.write_atomic(path, data, tag=f"{tag}{os.getpid()}")


def create_exclusive(path: Path, data: bytes) -> None:
    """A new file that must not exist yet (temp + link: ``FileExistsError`` rather than
    overwrite)."""
    atomicfile.write_atomic(path, data, tag=f"qw{os.getpid()}", no_clobber=True, mode=0o644)


# ------------------------------------------------------------------------------ spans

_DEC = json.JSONDecoder()
_WS = " \t\r\n"


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def array_spans(text: str) -> tuple[list[tuple[int, int, Any]], int]:
    """The (start, end, value) of each element of a top-level JSON array, and the position
    of its closing bracket. Raises ValueError if the text is not one well-formed array."""
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        raise ValueError("not a JSON array")
    i = _skip_ws(text, i + 1)
    out: list[tuple[int, int, Any]] = []
    if i < len(text) and text[i] == "]":
        close = i
    else:
        while True:
            try:
                obj, end = _DEC.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise ValueError(str(exc)) from None
            out.append((i, end, obj))
            j = _skip_ws(text, end)
            if j < len(text) and text[j] == ",":
                i = _skip_ws(text, j + 1)
                continue
            if j < len(text) and text[j] == "]":
                close = j
                break
            raise ValueError(f"expected , or ] at char {j}")
    if _skip_ws(text, close + 1) != len(text):
        raise ValueError(f"extra data after the array at char {close + 1}")
    return out, close


def entry_indent(text: str, start: int) -> str:
    """The whitespace an element's line starts with ('' for a one-line file)."""
    ls = text.rfind("\n", 0, start)
    if ls < 0:
        return ""
    pre = text[ls + 1:start]
    return pre if pre.strip() == "" else ""


def format_entry(obj: Any, indent: str, pretty: bool) -> str:
    """An entry as the file's other entries are written, or compact on one line. An entry of
    the top-level array sits one step in, so its own indent is the file's step (2 or 4
    spaces, a tab): its fields go one more step in, as ``json.dump(indent=step)`` wrote them."""
    if not pretty:
        return json.dumps(obj, ensure_ascii=False)
    step = indent or "  "
    return json.dumps(obj, indent=step, ensure_ascii=False).replace("\n", "\n" + indent)


def dump_queue(items: list[Any]) -> bytes:
    """A whole queue file (repair, the demo's workers): the design's json.dump indent=2."""
    return (json.dumps(items, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
