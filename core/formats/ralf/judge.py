"""Judge a RALF state through the engine and sort the findings by subject (the generator's
self-check and the tests that score a state against its truth)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qwarden.core.formats.ralf.source import RalfSource
from qwarden.core.model import Finding


def judge_root(root: Path | str, as_of: datetime) -> tuple[list[Finding], RalfSource]:
    """The findings of the real engine (``qwarden report``'s one scan) on a RALF root."""
    from qwarden.core.formats import open_engine

    engine = open_engine(root, as_of=as_of, follow=False, fmt="ralf")
    snap = engine.scan()
    src = engine.source
    assert isinstance(src, RalfSource)
    return list(snap.findings), src


def scored_by_subject(findings: list[Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out


def info_by_subject(findings: list[Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        if not f.scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out
