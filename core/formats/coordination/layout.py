"""Where the coordination files are, and the names the design gives them."""

from __future__ import annotations

from pathlib import Path

from qwarden.core.safeio import is_file

QUEUE = "task-queue.json"
WORKERS = "worker-status.json"
PROGRESS = "progress.json"
COMMS = "agent-comms.jsonl"
TASKS_DIR = "tasks"
# The advisory lock every writer of task-queue.json takes (qwarden's actions and the demo's
# workers): ``fcntl.flock(LOCK_EX)`` on this file, beside the queue, held for the whole
# read-modify-replace.
LOCK = QUEUE + ".lock"


def instruction_name(tid: str) -> str:
    """The design's ``tasks/task-<id>-instructions.md`` (an id already ``task-…`` is not
    prefixed twice)."""
    stem = tid if tid.startswith("task-") else f"task-{tid}"
    return f"{TASKS_DIR}/{stem}-instructions.md"


def find_root(path: Path | str) -> Path | None:
    """The directory holding task-queue.json: the path itself, or a ``coordination``/``.coord``
    dir inside it."""
    p = Path(path)
    if is_file(p / QUEUE):
        return p
    for sub in ("coordination", ".coordination", "shared"):
        if is_file(p / sub / QUEUE):
            return p / sub
    return None


def detect(path: Path | str) -> bool:
    """A coordination root: task-queue.json beside worker-status.json or agent-comms.jsonl
    or tasks/ (a lone task-queue.json could be anything's)."""
    root = find_root(path)
    if root is None:
        return False
    return (is_file(root / WORKERS) or is_file(root / COMMS)
            or (root / TASKS_DIR).is_dir())
