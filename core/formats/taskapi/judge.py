"""Judge a task API table once, engine-free: the source, then the core judge over this
format's Semantics (its clock and its rules). What ``report`` does through the engine; the
generator's self-check, the bench and the tests use it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from qwarden.core.config import Config
from qwarden.core.formats.taskapi.source import TaskApiSource, open_source
from qwarden.core.judge import Judge
from qwarden.core.model import Finding


def judge_root(root: Path | str, as_of: datetime, config: Config | None = None
               ) -> tuple[list[Finding], TaskApiSource]:
    """Every finding at ``as_of`` and the source (closed: its reads are done)."""
    config = config or Config()
    src: TaskApiSource = open_source(root, config)
    try:
        src.scan()
        judge = Judge(config, src.semantics)
        judge.has_db = src.has_record_side
        judge.run(src.all_tasks(), src.agents(), as_of, live=False)
        return list(judge.findings()), src
    finally:
        src.close()


def by_task(findings: list[Finding], scored: bool = True) -> dict[str, set[str]]:
    """task id -> its (scored) finding kinds."""
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.scored == scored:
            out.setdefault(f.task_id, set()).add(f.kind)
    return out
