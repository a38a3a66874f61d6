"""The task API format: a ``tasks`` table behind an HTTP task API (comic-pile a28e4ef8), in an
SQLite file (``--root PATH.db``) or PostgreSQL (``--root postgresql://…``, through asyncpg).

``FORMAT_INFO`` is what the registry (``core.formats``) lists. The package: ``kinds`` (the
columns, lanes, kinds), ``layout`` (detection, DSN redaction), ``parse`` (rows -> model, the
same for both databases), ``sqlite`` and ``pg`` (the read-only backends), ``source`` (the
``Source``), ``semantics``, ``rules`` (every kind), ``judge`` (the engine-free path),
``generate`` (static states with a truth file, and the SQLite -> PostgreSQL loader) and
``simulate`` (the live demo's workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwarden.core.formats.taskapi.layout import detect
from qwarden.core.sources.base import FormatInfo

if TYPE_CHECKING:
    from qwarden.core.config import Config


def open_source(root: Path | str, config: Config | None = None, live: bool = False,
                follow: bool = False) -> Any:
    """The source of an SQLite file or a PostgreSQL URL (raises ``SourceError``)."""
    from qwarden.core.config import Config as _Config
    from qwarden.core.formats.taskapi.layout import db_root, is_dsn
    from qwarden.core.formats.taskapi.source import TaskApiSource

    config = config or _Config()
    where = db_root(root)
    if is_dsn(where):
        from qwarden.core.formats.taskapi.pg import PgTasks

        table: Any = PgTasks(str(where), config.taskapi)
    else:
        from qwarden.core.formats.taskapi.sqlite import SqliteTasks

        lim = config.limits
        table = SqliteTasks(where, lim.db_busy_timeout_ms, lim.db_busy_retries)
    try:
        table.conn()  # fail now, with the reason, not at the first read
    except BaseException:
        table.close()
        raise
    return TaskApiSource(table, where, config, live, follow)


FORMAT_INFO = FormatInfo(
    name="taskapi", detect=detect, open=open_source,
    describe="a task API's tasks table (comic-pile): an SQLite file or a postgresql:// URL")
