"""A small task API server for the tests: comic-pile's ``/api/tasks`` at commit a28e4ef8.

It follows github.com/JoshCLWren/comic-pile at a28e4ef8 (``app/api/tasks.py``,
``app/models/task.py``, ``app/schemas/task.py``, the error handlers of ``app/main.py``), as
``../shared/formats-ahead.md`` ("Task API DB") records it, over a SQLite DB with the real schema
(a copy of ``../shared/fixtures/taskapi-sample/comic_pile.db``). What it reproduces, quirks
included:

- ``POST /api/tasks/``: 201 ``pending``; 400 "Task X already exists"; 422 (FastAPI's
  validation list) without task_id/title; 500 "Internal server error" without
  ``estimated_effort`` (the column is NOT NULL, the schema lets it be absent);
- ``/{id}/claim``: 404; 409 while *anyone* holds it (``assigned_agent`` set), its detail an
  object whose ``claimed_at`` is really ``updated_at``; the notes are *replaced* by "Claimed by A
  at ts"; the worktree check is off (the real app's ``SKIP_WORKTREE_CHECK=true``) unless
  ``worktree_base`` is given, then 400 when ``worktree_base/NAME`` does not exist;
- ``/{id}/heartbeat``: 403 "Task not assigned to X. Assigned to Y" unless the assignee;
- ``/{id}/update-notes``: appends "\\n[ts] notes" (a leading newline even on empty notes);
- ``/{id}/set-status``: 400 for a status outside pending|in_progress|blocked|in_review|done
  (checked before the 404); ``done`` sets completed; ``blocked`` sets the blocked fields from
  the request; any other status clears them; the agent stays assigned;
- ``/{id}/unclaim``: the assignee or ``admin`` (else 403); ``pending`` unless ``in_review``;
  clears agent and worktree, keeps ``completed`` and ``blocked_reason``; appends
  "\\n[ts] Unclaimed by A";
- ``updated_at`` moves on every write that changes a column (SQLAlchemy's ``onupdate``), not
  on one that changes nothing; times are stored naive UTC ("YYYY-MM-DD HH:MM:SS.ffffff") and
  answered as ISO strings; notes carry aware ISO times ("+00:00");
- errors are JSON ``{"detail": ...}``; unknown paths 404 "Not Found";
  ``GET /completed`` is shadowed by ``/{id}`` (404 "Task completed not found");
- not served (qwarden calls none of them): ``/bulk``, ``/coordinator-data``, ``/by-status``,
  ``/by-agent``, ``/by-priority`` (404 here); ``/api/tasks`` without the slash is FastAPI's
  307 to ``/api/tasks/``;
- ``merge-to-main`` is never served (the real one runs git in a worktree): it answers 500 and
  is recorded, so a test can prove qwarden never calls it.

Every request is recorded in ``server.requests`` (method, path, body), so a test can count them
(no retries on a refusal).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

API_VERSION = "comic-pile a28e4ef8"
VALID_STATUSES = ["pending", "in_progress", "blocked", "in_review", "done"]
FIELDS = ("id", "task_id", "title", "description", "priority", "status", "dependencies",
          "assigned_agent", "worktree", "status_notes", "estimated_effort", "completed",
          "blocked_reason", "blocked_by", "last_heartbeat", "instructions", "created_at",
          "updated_at")
TIME_FIELDS = ("last_heartbeat", "created_at", "updated_at")


class HttpError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


def _db_time(t: datetime) -> str:
    """How SQLAlchemy's SQLite dialect stores a DateTime: naive, microseconds always."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _api_time(v: Any) -> Any:
    if v is None:
        return None
    return datetime.fromisoformat(str(v)).isoformat()


def _missing(loc: str, body: Any) -> dict[str, Any]:
    return {"type": "missing", "loc": ["body", loc], "msg": "Field required", "input": body}


def _short(loc: str, value: Any) -> dict[str, Any]:
    return {"type": "string_too_short", "loc": ["body", loc],
            "msg": "String should have at least 1 character", "input": value,
            "ctx": {"min_length": 1}}


def _validate(body: Any, required: tuple[str, ...],
              optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Pydantic's checks of the request schemas: required non-empty strings, optional
    strings or null; FastAPI answers 422 with the list of errors."""
    if not isinstance(body, dict):
        raise HttpError(422, [{"type": "model_attributes_type", "loc": ["body"],
                               "msg": "Input should be a valid dictionary or object to "
                                      "extract fields from", "input": body}])
    errors = []
    for k in required:
        if k not in body:
            errors.append(_missing(k, body))
        elif not isinstance(body[k], str):
            errors.append({"type": "string_type", "loc": ["body", k],
                           "msg": "Input should be a valid string", "input": body[k]})
        elif not body[k]:
            errors.append(_short(k, body[k]))
    for k in optional:
        if body.get(k) is not None and not isinstance(body[k], str):
            errors.append({"type": "string_type", "loc": ["body", k],
                           "msg": "Input should be a valid string", "input": body[k]})
    if errors:
        raise HttpError(422, errors)
    return body


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class TaskApiServer:
    """``with TaskApiServer(db) as srv: srv.url`` — the API on 127.0.0.1, an ephemeral port."""

    def __init__(self, db: Path, worktree_base: Path | None = None) -> None:
        self.db = Path(db)
        self.worktree_base = worktree_base
        self.requests: list[tuple[str, str, Any]] = []
        # called with (method, path, body) before a request is served: a test's concurrent
        # worker acts there (between qwarden's re-read and its call)
        self.before_request: Any = None
        self._lock = threading.Lock()  # one writer at a time, as one uvicorn worker on SQLite
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TaskApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> TaskApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def act(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A worker's call, served in-process (not recorded): what another client would do."""
        try:
            return self.handle(method, path, body)
        except HttpError as exc:
            return exc.status, {"detail": exc.detail}

    def posts(self, suffix: str = "") -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == "POST" and r[1].endswith(suffix)]

    # -- the DB --------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = sqlite3.connect(self.db, timeout=10, isolation_level=None)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

    @staticmethod
    def _row(conn: sqlite3.Connection, task_id: str) -> dict[str, Any]:
        r = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if r is None:
            raise HttpError(404, f"Task {task_id} not found")
        return dict(r)

    @staticmethod
    def response(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row.get(k) for k in FIELDS}
        out["completed"] = bool(out["completed"])
        for k in TIME_FIELDS:
            out[k] = _api_time(out[k])
        return out

    @staticmethod
    def _update(conn: sqlite3.Connection, row: dict[str, Any], **cols: Any) -> dict[str, Any]:
        changed = {k: v for k, v in cols.items() if row.get(k) != v}
        if not changed:
            return row  # SQLAlchemy emits no UPDATE: updated_at stays
        changed["updated_at"] = _db_time(datetime.now(UTC))
        sets = ", ".join(f'"{k}" = ?' for k in changed)
        conn.execute(f"UPDATE tasks SET {sets} WHERE id = ?", (*changed.values(), row["id"]))
        return {**row, **changed}

    # -- the endpoints -------------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/api/tasks":
            raise Redirect("/api/tasks/")
        parts = [unquote(p) for p in path.split("/")]
        if len(parts) < 3 or parts[:3] != ["", "api", "tasks"]:
            raise HttpError(404, "Not Found")
        rest = parts[3:]
        if rest and rest[-1] == "" and len(rest) > 1:
            raise HttpError(404, "Not Found")
        with self._conn() as conn:
            if method == "GET":
                return 200, self._get(conn, rest)
            if method != "POST":
                raise HttpError(405, "Method Not Allowed")
            if rest in ([], [""]):
                return 201, self._create(conn, body)
            if len(rest) == 2:
                return 200, self._post(conn, rest[0], rest[1], body)
        raise HttpError(404, "Not Found")

    def _get(self, conn: sqlite3.Connection, rest: list[str]) -> Any:
        if rest in ([], [""]):
            rows = conn.execute("SELECT * FROM tasks ORDER BY task_id").fetchall()
            return [self.response(dict(r)) for r in rows]
        if rest == ["ready"]:
            rows = [dict(r) for r in conn.execute(
                "SELECT * FROM tasks WHERE status = 'pending' AND blocked_reason IS NULL")]
            by_id = {r["task_id"]: r for r in conn.execute("SELECT task_id, status FROM tasks")}
            ready = [r for r in rows if all(
                d.strip() in by_id and by_id[d.strip()]["status"] == "done"
                for d in (r["dependencies"] or "").split(",") if r["dependencies"])]
            order = {"HIGH": 0, "MEDIUM": 1, "LOW": 2}
            ready.sort(key=lambda r: order.get(r["priority"], 99))
            return [self.response(r) for r in ready]
        if rest == ["stale"]:  # a NULL heartbeat never matches
            cut = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
            rows = [dict(r) for r in conn.execute(
                "SELECT * FROM tasks WHERE status = 'in_progress' AND last_heartbeat IS NOT NULL "
                "ORDER BY last_heartbeat")]
            return [self.response(r) for r in rows
                    if datetime.fromisoformat(r["last_heartbeat"]) < cut]
        if len(rest) == 1:
            return self.response(self._row(conn, rest[0]))
        if len(rest) == 2 and rest[1] == "history":
            notes = self._row(conn, rest[0])["status_notes"] or ""
            out = []
            for line in notes.split("\n"):
                if not line.strip():
                    continue
                if line.startswith("[") and "] " in line:
                    end = line.index("]")
                    out.append({"timestamp": line[1:end], "event": line[end + 2:]})
                else:
                    out.append({"timestamp": None, "event": line})
            return out
        raise HttpError(404, "Not Found")

    def _create(self, conn: sqlite3.Connection, body: Any) -> dict[str, Any]:
        b = _validate(body, ("task_id", "title"), ("description", "instructions", "priority",
                                                   "dependencies", "estimated_effort"))
        if conn.execute("SELECT 1 FROM tasks WHERE task_id = ?", (b["task_id"],)).fetchone():
            raise HttpError(400, f"Task {b['task_id']} already exists")
        if b.get("estimated_effort") is None:
            raise HttpError(500, "Internal server error")  # NOT NULL constraint failed
        now = _db_time(datetime.now(UTC))
        cur = conn.execute(
            "INSERT INTO tasks (task_id, title, description, instructions, priority, status, "
            "dependencies, estimated_effort, completed, created_at, updated_at) "
            "VALUES (?,?,?,?,?,'pending',?,?,0,?,?)",
            (b["task_id"], b["title"], b.get("description"), b.get("instructions"),
             b.get("priority") or "MEDIUM", b.get("dependencies"), b["estimated_effort"],
             now, now))
        row = conn.execute("SELECT * FROM tasks WHERE id = ?", (cur.lastrowid,)).fetchone()
        return self.response(dict(row))

    def _post(self, conn: sqlite3.Connection, tid: str, verb: str, body: Any) -> Any:
        now = datetime.now(UTC)
        if verb == "claim":
            b = _validate(body, ("agent_name", "worktree"))
            row = self._row(conn, tid)
            if row["assigned_agent"]:
                raise HttpError(409, {
                    "error": "Task already claimed", "task_id": row["task_id"],
                    "current_assignee": row["assigned_agent"], "worktree": row["worktree"],
                    "current_status": row["status"],
                    "claimed_at": _api_time(row["updated_at"])})
            if self.worktree_base is not None and not os.path.exists(
                    os.path.join(self.worktree_base, b["worktree"])):
                raise HttpError(400, f"Worktree {b['worktree']} does not exist. Please create "
                                f"it first with: git worktree add ../{b['worktree']} <branch>")
            row = self._update(conn, row, status="in_progress", assigned_agent=b["agent_name"],
                               worktree=b["worktree"],
                               status_notes=f"Claimed by {b['agent_name']} at "
                                            f"{now.isoformat()}")
            return self.response(row)
        if verb == "update-notes":
            b = _validate(body, ("notes",))
            row = self._row(conn, tid)
            notes = (row["status_notes"] or "") + f"\n[{now.isoformat()}] {b['notes']}"
            return self.response(self._update(conn, row, status_notes=notes))
        if verb == "set-status":
            b = _validate(body, ("status",), ("blocked_reason", "blocked_by"))
            if b["status"] not in VALID_STATUSES:
                raise HttpError(400, f"Invalid status. Must be one of: "
                                f"{', '.join(VALID_STATUSES)}")
            row = self._row(conn, tid)
            cols: dict[str, Any] = {"status": b["status"]}
            if b["status"] == "done":
                cols["completed"] = 1
            elif b["status"] == "blocked":
                cols.update(blocked_reason=b.get("blocked_reason"),
                            blocked_by=b.get("blocked_by"))
            else:
                cols.update(blocked_reason=None, blocked_by=None)
            return self.response(self._update(conn, row, **cols))
        if verb == "heartbeat":
            b = _validate(body, ("agent_name",))
            row = self._row(conn, tid)
            if row["assigned_agent"] != b["agent_name"]:
                raise HttpError(403, f"Task not assigned to {b['agent_name']}. Assigned to "
                                f"{row['assigned_agent']}")
            return self.response(self._update(conn, row, last_heartbeat=_db_time(now)))
        if verb == "unclaim":
            b = _validate(body, ("agent_name",))
            row = self._row(conn, tid)
            if row["assigned_agent"] != b["agent_name"] and b["agent_name"] != "admin":
                raise HttpError(403, f"Task not assigned to {b['agent_name']}. Assigned to "
                                f"{row['assigned_agent']}")
            notes = (row["status_notes"] or "") + \
                f"\n[{now.isoformat()}] Unclaimed by {b['agent_name']}"
            status = row["status"] if row["status"] == "in_review" else "pending"
            return self.response(self._update(conn, row, status=status, assigned_agent=None,
                                              worktree=None, status_notes=notes))
        if verb == "merge-to-main":
            raise HttpError(500, "merge-to-main is never served by the test server")
        raise HttpError(404, "Not Found")


class _Handler(BaseHTTPRequestHandler):
    api: TaskApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        try:
            if method == "POST":
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self.api.requests.append((method, path, raw))
                    raise HttpError(422, [{"type": "json_invalid", "loc": ["body", 0],
                                           "msg": "JSON decode error", "input": {}}]) from None
            self.api.requests.append((method, path, body))
            if self.api.before_request is not None:
                self.api.before_request(method, path, body)
            status, payload = self.api.handle(method, path, body)
        except HttpError as exc:
            status, payload = exc.status, {"detail": exc.detail}
        except Redirect as exc:
            self.send_response(307)
            self.send_header("Location", exc.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        except Exception:  # the app's global handler
            status, payload = 500, {"detail": "Internal server error"}
        self._answer(status, payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
