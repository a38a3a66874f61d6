"""Where a task API queue is: an SQLite file whose ``tasks`` table has the API's columns, or a
PostgreSQL URL. Detection reads only the SQLite header and schema, read-only (no side file);
a URL is recognised by its scheme alone (connecting is the source's business, with a clear
error when the server cannot be reached)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qwarden.core.sources.errors import SourceError

PG_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(root: Path | str) -> bool:
    return isinstance(root, str) and root.lower().startswith(PG_SCHEMES)


def redact(dsn: str) -> str:
    """The DSN as a header may show it: the password (in the userinfo or a ``password=``
    query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://(unparseable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = "&".join(
        (kv.split("=", 1)[0] + "=***") if kv.lower().startswith("password=") else kv
        for kv in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# label (the DSN without its password) -> the DSN a source of this process was opened with:
# views see only the label (the engine's root), and the write path, handed that root by the
# console, gets the DSN back through ``real_dsn`` (kept in this process's memory only)
_OPENED: dict[str, str] = {}


def remember_dsn(dsn: str) -> str:
    """Note the DSN a source opened; returns its label."""
    label = redact(dsn)
    _OPENED[label] = dsn
    return label


def real_dsn(root: Path | str) -> Path | str:
    """The DSN behind a label a source of this process showed (anything else unchanged)."""
    return _OPENED.get(root, root) if isinstance(root, str) else root


def detect(root: Path | str) -> bool:
    """A PostgreSQL URL, or an SQLite file with a task API ``tasks`` table."""
    if is_dsn(str(root)):
        return True
    p = Path(root)
    if not p.is_file():
        return False
    from qwarden.core.formats.taskapi.sqlite import SqliteTasks, looks_like_sqlite

    if not looks_like_sqlite(p):
        return False
    table = SqliteTasks(p)
    try:
        table.conn()
    except SourceError:
        return False
    finally:
        table.close()
    return True


def db_root(root: Path | str) -> Path | str:
    """The root as the source keeps it: the DSN text, or the DB file's absolute path."""
    if is_dsn(str(root)):
        return str(root)
    return Path(os.path.abspath(root))


def journal_root(root: Path | str, config: Any = None) -> Path:
    """Where qwarden journals this queue's interventions (``Journal(journal_root(...))``):
    a DB file's journal is beside it, in ``DB.qwarden/`` (``comic_pile.db.qwarden/warden/
    journal.db``: one per DB, so two DBs in a directory never share undo history); a
    PostgreSQL root's is ``[taskapi] journal_dir``, else
    ``$XDG_STATE_HOME/qwarden/taskapi/HOST-PORT-DB``."""
    s = os.fspath(root)
    if "://" not in s:
        p = Path(s).absolute()
        return p.parent / f"{p.name}.qwarden"
    if config is not None and config.taskapi.journal_dir:
        return Path(config.taskapi.journal_dir).expanduser()
    u = urlsplit(s)
    name = f"{u.hostname or 'local'}-{u.port or 5432}-{u.path.lstrip('/') or 'db'}"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "qwarden" / "taskapi" / name
