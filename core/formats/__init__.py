"""Queue formats, one package each, and the registry that finds them.

A format registers one ``FormatInfo`` (``core.sources.base``) here: its name for ``--format``,
how to recognise a root, how to open a source. ``--format auto`` takes the first that
recognises the root, in the order below; nothing else in qwarden names a format.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from qwarden.core.config import Config
from qwarden.core.formats.coordination import FORMAT_INFO as COORDINATION
from qwarden.core.formats.octopoid.source import FORMAT_INFO as OCTOPOID
from qwarden.core.formats.ralf import FORMAT_INFO as RALF
from qwarden.core.formats.taskapi import FORMAT_INFO as TASKAPI
from qwarden.core.model import Finding
from qwarden.core.sources.base import FormatInfo, Source
from qwarden.core.sources.errors import SourceError

FORMATS: dict[str, FormatInfo] = {f.name: f for f in (OCTOPOID, RALF, COORDINATION, TASKAPI)}
FORMAT_NAMES: tuple[str, ...] = ("auto", *FORMATS)


def detect(root: str | os.PathLike[str]) -> FormatInfo | None:
    """The first format that recognises ``root``, or None."""
    for info in FORMATS.values():
        try:
            if info.detect(os.fspath(root)):
                return info
        except OSError:
            continue
    return None


def locate(root: str | os.PathLike[str] | None, fmt: str = "auto"
           ) -> tuple[FormatInfo, Path]:
    """Which format ``root`` holds and where (``--root``; None: ``QWARDEN_ROOT``, else the
    working directory and its parents, as git finds its repository). Raises SourceError with
    a sentence an operator can act on. A database URL (``postgresql://…``) is returned as the
    text it is (a ``Path`` would fold its ``//``)."""
    given = _given(root)
    if fmt != "auto":
        info = FORMATS.get(fmt)
        if info is None:
            raise SourceError(f"unknown format {fmt!r} (one of: {', '.join(FORMAT_NAMES)})")
        if given is None:
            here = Path.cwd()
            found = next((d for d in (here, *here.parents) if info.detect(d)), None)
            if found is None:
                raise SourceError(f"{here}: no {fmt} queue here or above "
                                  "(use --root or QWARDEN_ROOT)")
            return info, found
        _must_exist(given)
        return info, _as_root(given)
    if given is not None:
        _must_exist(given)
        info = detect(given)
        # no format recognised it: Octopoid's own check says what is missing
        return (info or OCTOPOID), _as_root(given)
    here = Path.cwd()
    for d in (here, *here.parents):
        info = detect(d)
        if info is not None:
            return info, d
    raise SourceError(f"{here}: no .orchestrator directory (or other queue: "
                      f"{', '.join(FORMATS)}) here or above (use --root or QWARDEN_ROOT)")


def _as_root(given: str) -> Path:
    # a URL stays text (its format's open takes either); typed Path for the callers that
    # only ever see directories and files
    return given if "://" in given else Path(given)  # type: ignore[return-value]


def _must_exist(given: str) -> None:
    if "://" in given:
        return  # a database URL: its format says whether it can be reached
    if not os.path.lexists(given):
        raise SourceError(f"{given}: no such directory")


def open_source(root: str | os.PathLike[str] | None, fmt: str = "auto",
                config: Config | None = None, live: bool = True,
                follow: bool = True) -> Source:
    """The source for ``root`` (see ``locate``)."""
    info, where = locate(root, fmt)
    return info.open(where, config or Config(), live, follow)


def _given(root: str | os.PathLike[str] | None) -> str | None:
    if root is not None:
        return os.fspath(root)
    return os.environ.get("QWARDEN_ROOT") or None


def open_engine(root: str | os.PathLike[str] | None, config: Config | None = None,
                as_of: datetime | None = None, follow: bool = True, fmt: str = "auto"):
    """An engine over the source for ``root`` (see ``open_source``)."""
    from qwarden.core.engine import Engine

    config = config or Config()
    source = open_source(root, fmt, config, live=as_of is None, follow=follow)
    return Engine(source, config, as_of=as_of, follow=follow)


def judge_once(root: str | os.PathLike[str], as_of: datetime, config: Config | None = None,
               fmt: str = "auto") -> tuple[list[Finding], Source]:
    """Every finding at ``as_of``, judged as ``qwarden report`` judges (one scan of a
    one-shot engine), and the source, closed (its reads are done): what the generators'
    self-checks and the tests score against a state's truth."""
    engine = open_engine(root, config, as_of=as_of, follow=False, fmt=fmt)
    try:
        return list(engine.scan().findings), engine.source
    finally:
        engine.source.close()


def kinds_by_subject(findings: Iterable[Finding], scored: bool = True) -> dict[str, set[str]]:
    """Subject (a task id, "queue", "agent:NAME") -> the kinds of its scored findings (or,
    ``scored=False``, of its informative ones)."""
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.scored == scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out


def autofix_refusal(fmt: str) -> str | None:
    """Why the auto-fixer cannot run on format ``fmt`` (None: it can)."""
    info = FORMATS.get(fmt) or next(
        (i for i in FORMATS.values() if fmt.startswith(i.name + "-")), None)
    if info is not None and info.auto_fixes:
        return None
    return (f"the auto-fixer knows Octopoid's fixes only; on a {fmt} queue use the console "
            "or `qwarden ACTION` (--fix refused)")


def open_interventions(fmt: str, root: str | os.PathLike[str], config: Config,
                       options: Mapping[str, Any] | None = None) -> Any:
    """The write path (``core.actions.interface.Interventions``) of format ``fmt`` on ``root``.
    Raises ``ReadOnly`` with the sentence to show when the format has none here."""
    from qwarden.core.actions.interface import ReadOnly

    # a source names its format with its version ("octopoid-v1"); the registry by its family
    info = FORMATS.get(fmt) or next(
        (i for i in FORMATS.values() if fmt.startswith(i.name + "-")), None)
    if info is None or info.interventions is None:
        raise ReadOnly(f"{fmt} queues are read-only here (no interventions)")
    return info.interventions(os.fspath(root), config, dict(options or {}))
