"""Judge a coordination root on its own: source -> view -> rules (the engine-free path the
generator's self-check, the tests and ``report`` before the engine takes a Source use)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.config import Config
from core.formats.coordination.rules import judge_view, view_of
from core.formats.coordination.source import CoordSource
from core.model import Finding


def judge_root(root: Path | str, as_of: datetime, config: Config | None = None
               ) -> tuple[list[Finding], CoordSource]:
    src = CoordSource(root, config)
    src.scan()
    assert src.state is not None
    return judge_view(view_of(src.state, as_of, config)), src


def by_subject(findings: list[Finding], scored: bool = True) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.scored == scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out
