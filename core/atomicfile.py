"""Durable, atomic file writes: the one way an intervention puts bytes into the root.

A temp file in the same directory (opened ``O_NOFOLLOW``: a link planted at the temp name is
refused, not followed), written in full and fsynced, then renamed over the target, then the
directory fsynced, so a crash at any point leaves the old bytes or the new, never half of
either. ``no_clobber`` links the temp file instead of renaming it: the link fails with
``FileExistsError`` rather than overwrite a file an agent created meanwhile.

The simulated agents of the demos write their own way (as the agents they imitate would);
everything qwarden itself writes into a queue goes through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path, tag: str) -> Path:
    """Where ``write_atomic(path, ..., tag=tag)`` stages its bytes (a crash can leave it)."""
    return path.parent / f".{path.name}.{tag}.tmp"


def existing_mode(path: Path, default: int = 0o644) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return default


def write_atomic(path: Path, data: bytes, *, tag: str, no_clobber: bool = False,
                 mode: int | None = None,
                 after_temp: Callable[[], None] | None = None) -> None:
    """Replace (or, with ``no_clobber``, create) ``path`` with ``data``. ``mode`` defaults to
    the mode of the file replaced; ``after_temp`` runs once the temp file is durable (the
    crash tests stop there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, tag)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 existing_mode(path) if mode is None else mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if after_temp is not None:
        after_temp()
    if no_clobber:
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, path)
    fsync_dir(path.parent)


def unlink_durable(path: Path) -> None:
    os.unlink(path)
    fsync_dir(path.parent)
