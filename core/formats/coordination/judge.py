"""Judge a coordination root once, engine-free: the source, then the core judge over this
format's Semantics (its clock and its rules). What ``report`` does through the engine; the
generator's self-check and the tests use it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qwarden.core.config import Config
from qwarden.core.formats.coordination.source import CoordSource
from qwarden.core.judge import Judge
from qwarden.core.model import Finding


def judge_root(root: Path | str, as_of: datetime, config: Config | None = None
               ) -> tuple[list[Finding], CoordSource]:
    config = config or Config()
    src = CoordSource(root, config)
    src.scan()
    judge = Judge(config, src.semantics)
    judge.facts = src.facts()
    judge.run(src.all_tasks(), src.agents(), as_of, live=False)
    return list(judge.findings()), src


def by_subject(findings: list[Finding], scored: bool = True) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.scored == scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out
