"""Helpers of the coordination tests: generated states, fresh workers, the judged kinds."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.timefmt import parse_any


def judged(root: Path, as_of: datetime | str | None = None) -> dict[str, set[str]]:
    if as_of is None:
        as_of = json.loads((root / "truth.json").read_text())["as_of"]
    at = parse_any(as_of) if isinstance(as_of, str) else as_of
    assert at is not None
    findings, _ = judge_once(root, at, fmt="coordination")
    return kinds_by_subject(findings)


def tree(root: Path) -> dict[str, tuple[bytes, float]]:
    """Every file under root with its bytes and mtime (reading must change neither)."""
    out = {}
    for dp, _dn, fn in os.walk(root):
        for f in fn:
            p = Path(dp) / f
            out[str(p.relative_to(root))] = (p.read_bytes(), p.stat().st_mtime)
    return out


def now() -> datetime:
    return datetime.now(UTC)


def iso_local(dt: datetime) -> str:
    return dt.astimezone().replace(tzinfo=None).isoformat()


def write_state(root: Path, entries: list[dict[str, Any]], workers: dict[str, Any],
                comms: list[dict[str, Any]] = (), files: bool = True) -> None:
    """A small hand-made state: the queue, the workers, the comms log, instruction files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tasks").mkdir(exist_ok=True)
    (root / "task-queue.json").write_text(json.dumps(entries, indent=2) + "\n")
    (root / "worker-status.json").write_text(json.dumps(workers, indent=2))
    (root / "agent-comms.jsonl").write_text("".join(json.dumps(c) + "\n" for c in comms))
    if files:
        for e in entries:
            if isinstance(e, dict) and "id" in e:
                name = e.get("instruction_file") or f"tasks/task-{e['id']}-instructions.md"
                (root / name).write_text(f"# Task: {e.get('description', '')}\n")


def worker(caps: list[str], hb_age_s: float, **kw: Any) -> dict[str, Any]:
    t = now() - timedelta(seconds=hb_age_s)
    return {"status": "active", "capabilities": caps, "registered_at": iso_local(t),
            "last_heartbeat": iso_local(t), "last_task_claimed": None,
            "last_task_completed": None, **kw}


def entry(tid: int | str, status: str = "pending", claimed_by: str | None = None,
          claim_age_s: float = 30, **kw: Any) -> dict[str, Any]:
    t = now() - timedelta(seconds=claim_age_s)
    return {"id": tid, "description": f"task {tid}",
            "instruction_file": f"tasks/task-{tid}-instructions.md", "context_files": [],
            "assigned_to": None, "status": status, "created_at": iso_local(t),
            "claimed_by": claimed_by, "claimed_at": iso_local(t) if claimed_by else None,
            "completed_by": None, "completed_at": None, "result": None, "metadata": {}, **kw}
