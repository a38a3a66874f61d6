"""Judge a RALF state on its own: source -> view -> RALF rules (the engine-free path, used
by the generator's self-check and the tests that score a state against its truth)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.formats.ralf.rules import RalfView, judge_view
from core.formats.ralf.source import RalfSource
from core.model import Finding


def judge_root(root: Path | str, as_of: datetime) -> tuple[list[Finding], RalfSource]:
    src = RalfSource(root)
    src.scan()
    view = RalfView(as_of=as_of, tasks=src.all_tasks(), agents=src.agents(),
                    facts=src.facts())
    return judge_view(view), src


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
