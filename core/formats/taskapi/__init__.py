"""The task API format: a ``tasks`` table behind an HTTP task API (comic-pile a28e4ef8), in an
SQLite file (``--root PATH.db``) or PostgreSQL (``--root postgresql://…``, through asyncpg).

``FORMAT_INFO`` is what the registry (``core.formats``) lists. The package: ``kinds`` (the
columns, lanes, kinds), ``layout`` (detection, DSN redaction), ``parse`` (rows -> model, the
same for both databases), ``sqlite`` and ``pg`` (the read-only backends), ``source`` (the
``Source``), ``semantics``, ``rules`` (every kind), ``judge`` (the engine-free path),
``generate`` (static states with a truth file, and the SQLite -> PostgreSQL loader),
``simulate`` (the live demo's workers), and the write path: ``actions`` (interventions
through the system's HTTP API, ``api``, or with ``--direct-db`` SQL, ``directdb``).
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
    from qwarden.core.formats.taskapi.source import open_source as open_table

    return open_table(root, config, live, follow)


def open_interventions(root: Path | str, config: Config, options: Any) -> Any:
    """The write path (``actions.open_interventions``): the system's API, or ``--direct-db``;
    raises ``ReadOnly`` without either."""
    from qwarden.core.formats.taskapi.actions import open_interventions as open_write_path
    from qwarden.core.formats.taskapi.layout import real_dsn

    # the console hands over the engine's root, a URL's label without its password
    return open_write_path(real_dsn(root), config, options)


FORMAT_INFO = FormatInfo(
    name="taskapi", detect=detect, open=open_source, interventions=open_interventions,
    commands={"note": "append an operator note to the task's status notes (taskapi)"},
    describe="a task API's tasks table (comic-pile): an SQLite file or a postgresql:// URL")
