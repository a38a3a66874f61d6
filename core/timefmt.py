"""The three timestamp forms a queue writes, parsed into aware UTC datetimes.

- Python ``isoformat()`` in local time with ``T`` (claims, task files): naive -> local zone.
- SQLite ``CURRENT_TIMESTAMP``, UTC with a space (created_at, updated_at, history).
- Heartbeat files, UTC with ``Z``.
Anything else gives None: a bad timestamp is missing evidence, not a crash.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

UTC = timezone.utc


def _local_offset(naive: datetime) -> timedelta:
    # time.mktime follows TZ and DST for that instant; cheaper than astimezone on hot paths.
    try:
        ts = time.mktime(naive.timetuple())
    except (OverflowError, ValueError):
        return timedelta(0)
    return datetime.fromtimestamp(ts) - datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def parse_local_iso(text: str | None) -> datetime | None:
    """isoformat() text; naive means the writer's local time (the ``T`` form)."""
    if not text:
        return None
    text = text.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return (dt - _local_offset(dt)).replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_db_time(text: object) -> datetime | None:
    """A DB timestamp: ``YYYY-MM-DD HH:MM:SS`` is UTC (CURRENT_TIMESTAMP); ``T`` form is local."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(text, str):
        return None
    s = text.strip()
    if len(s) >= 11 and s[10] == " ":
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return parse_local_iso(s)


def parse_any(text: str | None) -> datetime | None:
    """Heartbeat (``Z``), offsets, or the two forms above."""
    return parse_db_time(text)


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def parse_as_of(text: str) -> datetime:
    """``--as-of``: ISO 8601; without an offset it is local time, like the queue's own stamps."""
    dt = parse_local_iso(text)
    if dt is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    return dt


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def age_text(seconds: float) -> str:
    """Compact human age: 45s, 3m12s, 2h05m, 3d04h."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
