"""The three timestamp forms a queue writes, parsed into aware UTC datetimes.

- Python ``isoformat()`` in local time with ``T`` (claims, task files): naive -> local zone.
- SQLite ``CURRENT_TIMESTAMP``, UTC with a space (created_at, updated_at, history).
- Heartbeat files, UTC with ``Z``.
Anything else gives None: a bad timestamp is missing evidence, not a crash.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

UTC = UTC


_TZ_BY_HOUR: dict[str, timezone] = {}


def _local_tz(naive: datetime, hour_key: str) -> timezone:
    """The local UTC offset in force at that hour, as a fixed-offset zone (cached per hour:
    a 100,000-task queue has ~600,000 local stamps, and time.mktime is the slow part)."""
    tz = _TZ_BY_HOUR.get(hour_key)
    if tz is None:
        try:
            ts = time.mktime(naive.timetuple())
            off = datetime.fromtimestamp(ts) - datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
        except (OverflowError, ValueError, OSError):
            off = timedelta(0)
        tz = UTC if not off else timezone(off)
        if len(_TZ_BY_HOUR) > 100_000:
            _TZ_BY_HOUR.clear()
        _TZ_BY_HOUR[hour_key] = tz
    return tz


def reset_local_zone_cache() -> None:
    """For tests that change TZ."""
    _TZ_BY_HOUR.clear()


def parse_local_iso(text: str | None) -> datetime | None:
    """isoformat() text; naive means the writer's local time (the ``T`` form)."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.strip())
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_local_tz(dt, text[:13]))
    return dt if _MIN_YEAR < dt.year < _MAX_YEAR or _in_range(dt) else None


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
    if len(text) >= 11 and text[10] == " ":
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt
        return dt if _MIN_YEAR < dt.year < _MAX_YEAR or _in_range(dt) else None
    return parse_local_iso(text)


# A stamp in year 1 or 9999 may not survive the conversion to UTC every comparison and
# every output makes ('0001-01-01T00:00:00+14:00' is before datetime.min in UTC): such a
# stamp is checked once here and, if it does not fit, is missing evidence like any bad one.
_MIN_YEAR, _MAX_YEAR = 1, 9999


def _in_range(dt: datetime) -> bool:
    try:
        dt.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return True


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
