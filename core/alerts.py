"""``watch --exec CMD``: a shell command run on each new critical finding, the finding's JSON
object (the same one ``watch --json`` prints) on its stdin.

Runs never block the watch: each is an asyncio subprocess in its own session, killed with its
whole process group after ``[alerts] exec_timeout_s``. At most ``exec_limit`` runs start per
``exec_window_s``; findings over the limit are held and, once a slot frees, sent as one
``{"event": "suppressed", "count": N, "findings": [...]}`` run. Failures (cannot start, non-zero
exit, timeout) and held findings are reported on stderr. The command's own stdout and stderr go
to qwarden's stderr: stdout carries only the watch's results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from qwarden.core.config import AlertOptions
from qwarden.core.textsafe import clean_line

MAX_LISTED = 50  # findings named in one suppressed summary (the count has them all)


def _say(msg: str) -> None:
    print(f"qwarden: {msg}", file=sys.stderr, flush=True)


def _stderr_fd() -> int:
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests): no fd
        return asyncio.subprocess.DEVNULL


def _what(payload: dict[str, Any]) -> str:
    if payload.get("event") == "suppressed":
        return f"summary of {payload.get('count')} held findings"
    return f"TASK-{payload.get('task_id')} {payload.get('kind')}"


class ExecAlerts:
    def __init__(self, command: str, options: AlertOptions | None = None,
                 warn: Callable[[str], None] = _say,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.options = options or AlertOptions()
        self.warn = warn
        self.clock = clock
        self.started: deque[float] = deque()  # start times within the current window
        self.held: list[dict[str, Any]] = []
        self.runs = 0
        self.failures = 0
        self._running: set[asyncio.Task[None]] = set()
        self._flush: asyncio.TimerHandle | None = None

    # -- called from the event loop, never waits
    def offer(self, payload: dict[str, Any]) -> None:
        if self._slot_free():
            self._launch(payload)
            return
        self.held.append(payload)
        if len(self.held) == 1:
            o = self.options
            self.warn(f"--exec: rate limit reached ({o.exec_limit} per {o.exec_window_s:g}s): "
                      "holding new critical findings for one summary run")
        self._arm_flush()

    def _slot_free(self) -> bool:
        now = self.clock()
        while self.started and now - self.started[0] >= self.options.exec_window_s:
            self.started.popleft()
        return len(self.started) < self.options.exec_limit

    def _arm_flush(self) -> None:
        if self._flush is not None or not self.started:
            return
        delay = max(0.0, self.started[0] + self.options.exec_window_s - self.clock())
        self._flush = asyncio.get_running_loop().call_later(delay, self._send_held)

    def _send_held(self) -> None:
        self._flush = None
        if not self.held:
            return
        if not self._slot_free():
            self._arm_flush()
            return
        held, self.held = self.held, []
        self._launch(suppressed_summary(held))

    def _launch(self, payload: dict[str, Any]) -> None:
        self.started.append(self.clock())
        self.runs += 1
        task = asyncio.get_running_loop().create_task(self._run(payload))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, payload: dict[str, Any]) -> None:
        data = (json.dumps(payload, ensure_ascii=False, default=str) + "\n").encode()
        env = dict(os.environ, QWARDEN_EVENT=str(payload.get("event", "")),
                   QWARDEN_TASK_ID=str(payload.get("task_id", "")),
                   QWARDEN_KIND=str(payload.get("kind", "")),
                   QWARDEN_SEVERITY=str(payload.get("severity", "")))
        what = _what(payload)
        out = _stderr_fd()
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command, stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out, env=env,
                start_new_session=True)
        except (OSError, ValueError) as exc:
            self.failures += 1
            self.warn(f"--exec could not start for {what}: {clean_line(str(exc))}")
            return
        timeout = self.options.exec_timeout_s
        try:
            await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the shell and all it started
            await proc.wait()
            self.failures += 1
            self.warn(f"--exec timed out after {timeout:g}s for {what}: killed")
            return
        if proc.returncode != 0:
            self.failures += 1
            self.warn(f"--exec exited {proc.returncode} for {what}")

    async def close(self) -> None:
        """At the end of the watch: runs in flight finish (each is bounded by its timeout);
        findings still held are named on stderr rather than sent past the limit."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self.held:
            names = ", ".join(_what(p) for p in self.held[:MAX_LISTED])
            self.warn(f"--exec: {len(self.held)} new critical finding(s) not sent "
                      f"(rate limit): {names}")
            self.held = []
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


def suppressed_summary(held: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event": "suppressed", "at": held[-1].get("at"), "count": len(held),
            "findings": [{k: p.get(k) for k in ("task_id", "kind", "severity", "summary",
                                                "title", "at")}
                         for p in held[:MAX_LISTED]]}
