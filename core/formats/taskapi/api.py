"""The task API's client: one HTTP call at a time, each a refusal or an answer, never a retry.

The calls are comic-pile's ``/api/tasks`` (at a28e4ef8, ``../shared/formats-ahead.md``):
``GET /api/tasks/{id}``, ``GET /api/tasks/``, ``POST /api/tasks/`` and
``POST /api/tasks/{id}/claim|unclaim|set-status|update-notes``. ``merge-to-main`` (it runs git
in the server's worktree) is not callable from here at all.

- The server said no (4xx/5xx): ``ServerRefused(status, detail, call)`` with its ``detail``
  verbatim (a string as it is; an object, like the 409 of a claim, as compact JSON).
- The server cannot be reached, timed out, or answered something that is not the API:
  ``ApiUnreachable`` (a ``Refused``) naming the URL. After a POST was sent, a timeout means the
  outcome is unknown; the message says so.

httpx sends each request once (no retries, redirects not followed), with a timeout on
connecting and on reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from qwarden.core.actions.interface import Refused, ServerRefused

# the calls qwarden makes; never heartbeat (it would fake a sign of life) nor merge-to-main
POST_PATHS = ("claim", "unclaim", "set-status", "update-notes")
MAX_DETAIL = 2000  # characters of a server's words kept (a huge error page is cut)


class ApiUnreachable(Refused):
    """The task API did not answer (connection, timeout) or did not answer as the API."""


@dataclass(frozen=True)
class Call:
    """One HTTP call of a plan: exactly what is sent."""

    method: str
    path: str
    body: dict[str, Any] | None = None

    def line(self) -> str:
        """The call on one plain line: the body as JSON, every character that is not
        printable (controls, C1, bidi overrides, line separators) as its ``\\uXXXX``."""
        body = "" if self.body is None else " " + printable_json(self.body)
        return f"{self.method} {self.path}{body}"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Call:
        return cls(str(d["method"]), str(d["path"]), d.get("body"))


def printable_json(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else
                   "".join(f"\\u{u:04x}" for u in _utf16(ch)) for ch in text)


def _utf16(ch: str) -> list[int]:
    b = ch.encode("utf-16-be")
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def task_path(task_id: str, verb: str | None = None) -> str:
    """``/api/tasks/{id}[/verb]``, the id quoted so no id can name another route."""
    if verb is not None and verb not in POST_PATHS:
        raise ValueError(f"not a task API call qwarden makes: {verb}")
    base = f"/api/tasks/{quote(task_id, safe='')}"
    return base if verb is None else f"{base}/{verb}"


def normalise_url(url: str) -> str:
    """The app's base URL (``http://host:port``; a trailing ``/api`` or ``/`` is dropped).
    Anything but http(s) with a host is refused with the URL named."""
    raw = url.strip()
    try:
        parts = urlsplit(raw)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"task API URL {url!r} is not an http(s)://HOST[:PORT] URL")
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def detail_text(resp: httpx.Response) -> str:
    """The server's words: FastAPI's ``{"detail": ...}``, verbatim."""
    try:
        payload = resp.json()
    except ValueError:
        text = resp.text.strip() or resp.reason_phrase or "(no body)"
        return text[:MAX_DETAIL]
    if isinstance(payload, dict) and "detail" in payload:
        d = payload["detail"]
        text = d if isinstance(d, str) else json.dumps(d, ensure_ascii=False, sort_keys=True)
    else:
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return text[:MAX_DETAIL]


class TaskApi:
    """A client of one task API. ``transport`` is for tests that want httpx's own mocks;
    qwarden's tests use a real server."""

    def __init__(self, url: str, timeout_s: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = normalise_url(url)
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            follow_redirects=False, transport=transport,
            headers={"User-Agent": "qwarden", "Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TaskApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------
    def call(self, c: Call) -> Any:
        """Send one call once; the decoded JSON answer, or a refusal."""
        where = f"{self.url}{c.path}"
        if c.method == "POST" and c.path.endswith("/merge-to-main"):
            raise Refused("qwarden never calls merge-to-main (it runs git on the server)")
        if c.method == "POST" and c.path.endswith("/heartbeat"):
            raise Refused("qwarden never sends a heartbeat (it would fake a worker's sign of "
                          "life)")
        try:
            if c.method == "GET":
                resp = self._client.get(c.path)
            elif c.method == "POST":
                resp = self._client.post(c.path, json=c.body)
            else:
                raise Refused(f"qwarden makes no {c.method} calls")
        except httpx.TimeoutException:
            unknown = (" (the request was sent: whether the server applied it is unknown; "
                       "re-read the task)") if c.method == "POST" else ""
            raise ApiUnreachable(f"the task API at {self.url} did not answer {c.method} "
                                 f"{c.path} within {self.timeout_s:g} s{unknown}") from None
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"the task API at {self.url} cannot be reached "
                                 f"({type(exc).__name__}: {exc or 'no detail'}); "
                                 "is it running? (--api URL, [taskapi] api_url)") from None
        if resp.status_code >= 400:
            raise ServerRefused(resp.status_code, detail_text(resp), f"{c.method} {c.path}")
        if resp.status_code >= 300:
            raise ApiUnreachable(f"{where}: answered {resp.status_code} (a redirect to "
                                 f"{resp.headers.get('location', '?')}): not the task API "
                                 "(check the URL)")
        try:
            return resp.json()
        except ValueError:
            raise ApiUnreachable(f"{where}: answered {resp.status_code} with something that "
                                 "is not JSON: not the task API (check the URL)") from None

    def get_task(self, task_id: str) -> dict[str, Any]:
        got = self.call(Call("GET", task_path(task_id)))
        return _task(got, f"{self.url}{task_path(task_id)}")

    def list_tasks(self) -> list[dict[str, Any]]:
        got = self.call(Call("GET", "/api/tasks/"))
        if not isinstance(got, list):
            raise ApiUnreachable(f"{self.url}/api/tasks/: not a list of tasks")
        return [_task(t, f"{self.url}/api/tasks/") for t in got]

    def post(self, c: Call) -> dict[str, Any]:
        return _task(self.call(c), f"{self.url}{c.path}")


TASK_KEYS = ("task_id", "status", "assigned_agent", "updated_at")


def _task(got: Any, where: str) -> dict[str, Any]:
    if not isinstance(got, dict) or any(k not in got for k in TASK_KEYS):
        raise ApiUnreachable(f"{where}: the answer is not a task (no "
                             f"{'/'.join(TASK_KEYS)}): not the task API?")
    return got
