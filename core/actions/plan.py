"""A Plan: the exact DB and file changes one intervention will make, and what it was made from.

Plans are plain data (JSON round-trip) so the journal can store them, ``--dry-run`` and the TUI
dialog can show them (``describe()``), and ``apply`` can check them against the live state before
touching anything. Every write qwarden makes goes through a Plan.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwarden.core.safeio import LeavesRoot, check_inside

# An action rewrites a task file whole, so it reads it whole: bigger files are refused (the
# report reads a bounded prefix of them instead).
ACTION_FILE_MAX_BYTES = 16 * 1024 * 1024
# Files under the root a plan may touch: task files, quarantine, the human inbox.
ALLOWED_PREFIXES = ("shared/queue/", "shared/quarantine/", "messages/")


class StalePlan(Exception):
    """The state changed between planning and applying (an agent moved on): nothing written."""


class Refused(Exception):
    """The action does not apply to this task (wrong state, read-only, live claim, ...)."""


def check_inside_root(root: Path, rels: Iterable[str]) -> None:
    """The containment check of every write qwarden makes (plan files, quarantine, journal,
    state.db, the auto-fixer's notes): a path that a symlinked directory (or file) leads out
    of the root is refused, naming the link."""
    for rel in rels:
        try:
            check_inside(root, rel)
        except LeavesRoot as exc:
            raise Refused(f"{exc.strerror}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RowOp:
    """One DB statement. ``before`` is the full row the plan was made from (None: must be
    absent); ``after`` the columns it sets (update), the row it adds (insert), or {} (delete).
    ``key`` names the row: {"id": ...} for tasks, {"id": N} for a history row to delete."""

    table: str
    op: str  # update | insert | delete
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "op": self.op, "key": self.key, "before": self.before,
                "after": self.after}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RowOp:
        return cls(d["table"], d["op"], d["key"], d["before"], d["after"])


@dataclass(frozen=True)
class FileOp:
    """One file change, relative to the root.

    write: src == dst, content replaced; move: src -> dst (dst must not exist), content may
    change; create: src None; remove: dst None (only undo uses it, for files qwarden created).
    ``before_sha`` is the hash of src the plan was made from; ``after`` the bytes dst gets."""

    src: str | None
    dst: str | None
    before_sha: str | None
    after: bytes | None

    @property
    def kind(self) -> str:
        if self.src is None:
            return "create"
        if self.dst is None:
            return "remove"
        return "write" if self.src == self.dst else "move"

    @property
    def after_sha(self) -> str | None:
        return None if self.after is None else sha256(self.after)

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "before_sha": self.before_sha,
                "after": None if self.after is None else base64.b64encode(self.after).decode()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileOp:
        after = None if d["after"] is None else base64.b64decode(d["after"])
        return cls(d["src"], d["dst"], d["before_sha"], after)


@dataclass(frozen=True)
class Plan:
    kind: str  # retry, release, sync, accept, cancel, ...
    task_id: str
    actor: str
    note: str = ""
    summary: str = ""  # one line for the dialog title and the log
    rows: tuple[RowOp, ...] = ()
    files: tuple[FileOp, ...] = ()
    warnings: tuple[str, ...] = ()  # shown in the dialog (e.g. "no evidence of work")
    undoes: int | None = None  # the action this plan reverses
    extra: dict[str, Any] = field(default_factory=dict)

    # -- validation --------------------------------------------------------
    def check_paths(self) -> None:
        """Every path stays inside the root, in a place a supervisor may write."""
        for f in self.files:
            for p in (f.src, f.dst):
                if p is None:
                    continue
                parts = p.split("/")
                if (p.startswith("/") or ".." in parts or "" in parts
                        or not p.startswith(ALLOWED_PREFIXES)):
                    raise Refused(f"plan touches a path outside the queue: {p!r}")
        for r in self.rows:
            if r.table not in ("tasks", "task_history"):
                raise Refused(f"plan touches table {r.table!r}")

    def written_paths(self) -> list[str]:
        """Every path under the root applying this plan may write, for the containment
        check: its files, the quarantine a grabbed source may be kept in, state.db."""
        out = [p for f in self.files for p in (f.src, f.dst) if p is not None]
        if self.files:
            out.append("shared/quarantine/")
        if self.rows:
            out.append("state.db")
        return out

    # -- serialisation -----------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "task_id": self.task_id, "actor": self.actor,
                "note": self.note, "summary": self.summary,
                "rows": [r.to_json() for r in self.rows],
                "files": [f.to_json() for f in self.files], "warnings": list(self.warnings),
                "undoes": self.undoes, "extra": self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(kind=d["kind"], task_id=d["task_id"], actor=d["actor"], note=d["note"],
                   summary=d["summary"], rows=tuple(RowOp.from_json(r) for r in d["rows"]),
                   files=tuple(FileOp.from_json(f) for f in d["files"]),
                   warnings=tuple(d["warnings"]), undoes=d["undoes"], extra=d["extra"])

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    # -- display -----------------------------------------------------------
    def describe(self) -> list[str]:
        """The exact changes, one line each, for --dry-run and the confirm dialog."""
        out = [f"{self.kind} TASK-{self.task_id}: {self.summary}".rstrip(": ")]
        if self.note:
            out.append(f"  note: {self.note}")
        for w in self.warnings:
            out.append(f"  ! {w}")
        for r in self.rows:
            key = ", ".join(f"{k}={v}" for k, v in r.key.items())
            if r.op == "update":
                for col, new in r.after.items():
                    old = (r.before or {}).get(col)
                    out.append(f"  db {r.table}[{key}].{col}: {_short(old)} -> {_short(new)}")
            elif r.op == "insert":
                vals = ", ".join(f"{k}={_short(v)}" for k, v in r.after.items() if k != "id")
                out.append(f"  db {r.table} + row {key}: {vals}".replace(" : ", ": "))
            else:
                out.append(f"  db {r.table} - row {key}")
        for f in self.files:
            size = "" if f.after is None else f" ({len(f.after)} bytes)"
            if f.kind == "write":
                out.append(f"  file {f.src}: rewrite{size}")
            elif f.kind == "move":
                out.append(f"  file {f.src} -> {f.dst}{size}")
            elif f.kind == "create":
                out.append(f"  file + {f.dst}{size}")
            else:
                out.append(f"  file - {f.src}")
        if self.extra.get("diff"):
            out.extend(f"    {line}" for line in self.extra["diff"])
        return out


def _short(v: Any, n: int = 60) -> str:
    s = "NULL" if v is None else repr(v) if isinstance(v, str) else str(v)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"
