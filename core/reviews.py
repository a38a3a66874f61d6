"""When a supervisor last reviewed each task, read from qwarden's own journal.

The engine reads this (read-only, creating nothing) so a reviewed finished task leaves the
"unread" list; the journal itself (``core.actions.journal``) writes it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

REVIEWS_SQL = ("SELECT task_id, MAX(created_at) FROM actions WHERE state IN ('done','undone') "
               "AND kind IN ('accept','retry','cancel','mark-read') GROUP BY task_id")


def journal_path(root: Path) -> Path:
    return Path(root) / "warden" / "journal.db"


def read_reviews(root: Path) -> dict[str, str]:
    """``Journal.reviews`` for observers: read-only, creates nothing, {} when there is no
    journal yet or it cannot be read."""
    path = journal_path(root)
    if not path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            return {str(t): str(at) for t, at in conn.execute(REVIEWS_SQL).fetchall()}
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
