"""Opening paths that agents, not people, control: never hang, never read without a bound,
never write through a link that leads out of the root.

Every open of an untrusted path goes through here (agent files, notes, logs, the config, the
task files an action reads and the paths it writes), so one rule holds everywhere:

- opened ``O_NONBLOCK`` (a FIFO with no writer cannot block the open or the read) and checked
  with ``fstat`` on the opened descriptor (no stat-then-open race): anything but a regular file
  is refused as ``NotRegular``, naming what it is (FIFO, character device, directory...);
- read with a size bound: ``read_prefix`` keeps the first bytes (what a report shows),
  ``read_whole`` refuses a file larger than the bound (what an action rewrites: a truncated copy
  would lose the agent's bytes);
- ``check_inside`` resolves every path a writer is about to touch and refuses one that leaves
  the root through a symlink, naming the link.

Errors are ``OSError`` subclasses with a ``strerror``, so callers that already turn an
``OSError`` into a read problem keep doing so.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# A FIFO must not hang the open or the read; a terminal must not become our controlling tty.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"))


class NotRegular(OSError):
    """The path is a FIFO, device, socket or directory where a regular file was expected."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        super().__init__(errno.EINVAL, f"{what}, not a regular file", str(path))


class TooLarge(OSError):
    """A file that must be read whole is larger than the bound."""

    def __init__(self, path: str | os.PathLike[str], size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{size:,} bytes, more than the {limit:,} qwarden reads",
                         str(path))


class LeavesRoot(OSError):
    """A path to be written resolves outside the root through a symlink."""

    def __init__(self, link: str, target: str) -> None:
        super().__init__(errno.EXDEV, f"{link} is a symlink to {target}, outside the root; "
                         "qwarden neither reads nor writes through it", link)


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A read-only descriptor on a regular file, and its fstat. Raises ``NotRegular`` for
    anything else (the descriptor is closed), ``OSError`` when it cannot be opened."""
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(path, kind_of(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_bounded(fd: int, size: int, limit: int) -> tuple[bytes, bytes]:
    """Up to ``limit + 1`` bytes (one more tells truncation) and, when truncated, the last
    64 KiB, where the trail is appended. Sized from stat: a buffer of ``limit`` bytes per
    read made reading 100,000 small files three times slower than the bytes need."""
    want = min(size, limit) + 1
    data = os.read(fd, want)
    if len(data) == want and want <= limit:  # grew since the stat: read on to the limit
        chunks, total = [data], len(data)
        while total <= limit:
            more = os.read(fd, limit + 1 - total)
            if not more:
                break
            chunks.append(more)
            total += len(more)
        data = b"".join(chunks)
    if len(data) <= limit:
        return data, b""
    end = os.fstat(fd).st_size
    try:
        tail = os.pread(fd, 64 * 1024, max(limit, end - 64 * 1024))
    except OSError:
        tail = b""
    return data, tail


def read_prefix(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most the first ``limit`` bytes of a regular file."""
    fd, st = open_regular(path)
    try:
        data, _ = read_bounded(fd, st.st_size, limit)
    finally:
        os.close(fd)
    return data[:limit]


def read_whole(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """All of a regular file and its fstat, or ``TooLarge`` if it holds more than ``limit``."""
    fd, st = open_regular(path)
    try:
        data, _ = read_bounded(fd, st.st_size, limit)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TooLarge(path, max(st.st_size, len(data)), limit)
    return data, st


def read_tail(path: str | os.PathLike[str], limit: int) -> bytes:
    """The last ``limit`` bytes of a regular file (a log's live end)."""
    fd, st = open_regular(path)
    try:
        return os.pread(fd, limit, max(0, st.st_size - limit))
    finally:
        os.close(fd)


def mtime(path: str | os.PathLike[str]) -> float | None:
    """A file's mtime, None for any failure (missing, a name too long, permission...)."""
    try:
        return os.stat(path).st_mtime
    except (OSError, ValueError):
        return None


def is_dir(path: str | os.PathLike[str]) -> bool:
    """``Path.is_dir`` without its exceptions (it raises for ENAMETOOLONG, EACCES...)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_file(path: str | os.PathLike[str]) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def within(root_real: str, path: str) -> bool:
    """Does ``path``, every link resolved, stay under the (resolved) root?"""
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def check_inside(root: Path, rel: str) -> None:
    """Refuse (``LeavesRoot``) a path under ``root`` that a writer would follow out of it: each
    existing component is checked, so the message names the link itself (``shared/queue/
    incoming -> /elsewhere``), not just the final path. Missing components are fine: what a
    writer creates there is inside."""
    root_real = os.path.realpath(root)
    cur = Path(root)
    done: list[str] = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        cur = cur / part
        done.append(part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        except OSError:
            continue  # the writer will fail on it with its own error
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(cur)
            if not (target == root_real or target.startswith(root_real + os.sep)):
                raise LeavesRoot("/".join(done), target)
