"""The engine: one full scan of a source, then incremental updates, plus the poll.

It holds one ``Source`` (``core.sources.base``) and knows no format: no DB connection, no
paths, no lane names.
- Changes: the source's watch spec names paths to watch (``watchfiles``) and a cheap change
  marker polled every second (a DB's ``PRAGMA data_version``); either makes the source re-read
  only what changed and say which tasks and agents that touched.
- Time: claims age even when nothing is written, so time-sensitive tasks are re-judged often.
- A full reconciliation runs every poll interval (300 s), never overlapping itself.
- A scored finding born of a change waits for a second look (``_hold_born_findings``): queues
  write in two steps (Octopoid: the file then the row to create, the row then the trail to
  claim), and between them the state is one-sided. Until the look, the task is published as it
  was; the look ``confirm_after_s`` later has the source re-read every side of the task (no
  event needed) and the finding is published only if it is still there.
Subscribers get each new immutable Snapshot on the event loop. Reading never writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from types import MappingProxyType

from qwarden.core.config import Config
from qwarden.core.judge import Judge
from qwarden.core.model import Agent, Publisher, Severity, Side, Snapshot, Task, TrailEvent
from qwarden.core.reviews import journal_path, read_reviews
from qwarden.core.sources.base import Delta, Source
from qwarden.core.sources.errors import SourceError
from qwarden.core.timefmt import UTC, parse_any

log = logging.getLogger("qwarden.engine")

Subscriber = Callable[[Snapshot], None]
_CANNOT_WATCH = " (cannot watch for changes; retrying)"
MAX_LOOKS = 3  # a held finding is published after this many looks, whatever it showed


class Engine:
    def __init__(self, source: Source, config: Config | None = None,
                 as_of: datetime | None = None, follow: bool = True) -> None:
        """``follow=False``: one scan and done (``qwarden report``): the source keeps none of
        the caches that make later rescans cheap, and the published dicts are handed over."""
        self.config = config or Config()
        self.as_of = as_of
        self.live = as_of is None
        self.follow = follow
        self.source = source
        self.root = source.root
        self.judge = Judge(self.config, source.semantics, incremental=follow)
        self.snapshot: Snapshot | None = None
        self.paused = False
        self.last_poll_at: datetime | None = None
        self.next_poll_at: datetime | None = None
        self.last_error: str | None = None
        self._agents: dict[str, Agent] = {}
        self._tasks: dict[str, Task] = {}
        self._generation = 0
        self._subscribers: list[Subscriber] = []
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks_running: list[asyncio.Task[None]] = []
        # Snapshots share unchanged entries: each publish copies only what changed.
        # (A one-shot engine hands its dicts over instead: each of its scans builds new ones.)
        handover = not follow
        self._pub_tasks = Publisher(lambda: self._tasks, handover=handover)
        self._pub_verdicts = Publisher(lambda: self.judge.verdicts, handover=handover)
        self._pub_findings = Publisher(lambda: self.judge.by_task, handover=handover)
        self._pub_severity = {sev: Publisher(self._severity_source(sev), handover=handover)
                              for sev in Severity}
        self._publishers = [self._pub_verdicts, self._pub_findings,
                            *self._pub_severity.values()]  # the judge's, by task id
        self._reviews_stamp: tuple[int, int] | None = None
        self._watch_ready = asyncio.Event()
        self.caught_up = asyncio.Event()  # watching, and what changed during start-up is in
        # task -> (when its next look is due, time.monotonic(); the born kinds seen so far;
        # looks so far)
        self._held: dict[str, tuple[float, frozenset[str], int]] = {}
        self._look_due = asyncio.Event()  # a hold was added: the look loop must (re)arm

    @property
    def format(self) -> str:
        return self.source.format

    # ------------------------------------------------------------------ clock
    def clock(self) -> datetime:
        return self.as_of if self.as_of is not None else datetime.now(UTC)

    # ------------------------------------------------------------------ scans
    def scan(self) -> Snapshot:
        """Full read and judgement (synchronous). Raises SourceError if the queue is unreadable.
        Once warm, only what changed is re-read and re-judged (files by stat, rows by a light
        fingerprint), so the periodic reconciliation stays cheap at 100,000 tasks."""
        if self.snapshot is not None and self.follow:
            return self._reconcile()
        src = self.source
        src.scan()
        self._agents = src.agents()
        self._load_reviews()
        self._tasks = src.all_tasks()
        self._pub_tasks.reset()
        self.judge.has_db = src.has_record_side
        self.judge.facts = src.facts()
        self.judge.run(self._tasks, self._agents, self.clock(), self.live)
        self.last_poll_at = self.clock()
        return self._publish(frozenset(self._tasks))

    def _reconcile(self) -> Snapshot:
        """The warm full pass: everything is checked, only changes are re-read."""
        delta = self.source.rescan()
        dirty = self._take(delta)
        dirty |= self._load_reviews()
        snap = self.rejudge(self._hold_born_findings(dirty), aged=True)
        self.last_poll_at = self.clock()
        return snap

    def _take(self, delta: Delta) -> set[str]:
        """Bring a source's delta in: the changed tasks rebuilt from the source, the changed
        agents copied; returns the tasks to re-judge (an agent's change re-judges what it
        names and what it is judged to hold)."""
        dirty = set(delta.tasks)
        if delta.agents:
            agents = self.source.agents()
            for name in delta.agents:
                for a in (self._agents.get(name), agents.get(name)):
                    if a is not None and a.current_task_id:
                        dirty.add(a.current_task_id)
                dirty |= self._tasks_claimed_by(name)
            self._agents = agents
        if delta.facts:
            self.judge.facts = self.source.facts()
        for tid in dirty:
            self._rebuild_task(tid)
        return dirty

    # ------------------------------------------------------------------ second looks
    def _hold_born_findings(self, dirty: set[str], looked: AbstractSet[str] = frozenset()
                            ) -> set[str]:
        """The dirty tasks that may be published now. A task whose change would bring a
        scored finding it did not have is held back, published as it was, until its second
        look; at the look (``looked``) a finding seen at the change and again now is real.

        Why: a two-step write is one-sided between its steps (the file of a new task before
        its row, a submit's file in provisional/ before the row says so); that is no finding.
        The look re-reads both sides of the task, so a lost or late event cannot keep a
        one-sided view either. Bounded: a real finding shows ``confirm_after_s`` late."""
        delay = self.config.live.confirm_after_s
        if not (self.live and self._tasks_running and delay > 0 and dirty) \
                or self.snapshot is None:
            return dirty  # (only a started engine gives second looks; a scan() caller judges)
        for tid in dirty & self._held.keys():
            # a held task's entry is the published one: judge what the sources say now (an
            # agent's change dirties the task without rebuilding it)
            self._rebuild_task(tid)
        present = [t for tid in dirty if (t := self._tasks.get(tid)) is not None]
        kinds = self.judge.preview(present, self._agents, self.clock(), self.live)
        published = self.snapshot.tasks
        now = time.monotonic()
        ready: set[str] = set()
        for tid in dirty:
            born = kinds.get(tid, frozenset()) - self.judge.scored_kinds(tid)
            held = self._held.get(tid)
            if not born or (held is not None and tid in looked and (
                    born <= held[1] or held[2] >= MAX_LOOKS)):
                self._held.pop(tid, None)  # nothing new, or seen twice (or looked enough)
                ready.add(tid)
                continue
            if held is None:
                self._held[tid] = (now + delay, born, 0)
            elif tid in looked:  # a kind new at the look: one look more
                self._held[tid] = (now + delay, born, held[2])
            else:
                self._held[tid] = (held[0], held[1] | born, held[2])
            prev = published.get(tid)
            if prev is None:
                self._tasks.pop(tid, None)
            else:
                self._tasks[tid] = prev
            self._pub_tasks.touch(tid)
        return ready

    def _look_again(self, ids: AbstractSet[str]) -> set[str]:
        """Have the source re-read every side of these tasks now; returns what to re-judge."""
        delta = self.source.look_again(ids)
        delta.tasks |= set(ids)
        return self._take(delta)

    def _load_reviews(self) -> set[str]:
        """When a supervisor last reviewed each task (qwarden's own journal, read-only);
        returns the tasks whose review time changed."""
        root = self.source.journal_root
        if root is None:
            return set()
        try:
            st = os.stat(journal_path(root))
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._reviews_stamp:
            return set()
        self._reviews_stamp = stamp
        new = {tid: t for tid, at in read_reviews(root).items()
               if (t := parse_any(at)) is not None}
        old = self.judge.reviews
        self.judge.reviews = new
        return {tid for tid in set(old) | set(new) if old.get(tid) != new.get(tid)}

    def scan_progress(self) -> str:
        """What a cold scan is doing right now (read from another thread while it runs)."""
        return self.source.scan_progress()

    def _severity_source(self, sev: Severity) -> Callable[[], dict[str, None]]:
        return lambda: self.judge.tasks_by_severity[sev]

    def _one_shot_guard(self) -> None:
        if not self.follow:  # its published dicts were handed over: it must not change them
            raise RuntimeError("a one-shot engine (follow=False) only scans")

    def _rebuild_task(self, tid: str) -> None:
        self._one_shot_guard()
        task = self.source.task(tid)
        if task is None:
            self._tasks.pop(tid, None)
        else:
            self._tasks[tid] = task
        self._pub_tasks.touch(tid)

    def full_task(self, task_id: str) -> Task | None:
        """The task with every file parsed fully (for detail views); not kept."""
        task = self._tasks.get(task_id)
        return None if task is None else self.source.full_task(task)

    def db_row(self, task_id: str) -> dict[str, object]:
        """Every field of the task's record as the queue holds it (the detail view's
        record side)."""
        try:
            return dict(self.source.raw_record(task_id))
        except SourceError:
            return {}

    def apply_paths(self, paths: set[str]) -> set[str]:
        """Bring in what changed at these paths (absolute, or relative to the root), as the
        watcher does; returns the tasks to re-judge (``rejudge`` them to publish)."""
        self._one_shot_guard()
        return self._take(self.source.on_paths(paths))

    def apply_marker(self) -> set[str]:
        """Bring in what the change marker's move means (a DB write), as the watch does."""
        self._one_shot_guard()
        return self._take(self.source.on_marker())

    def _tasks_claimed_by(self, name: str) -> set[str]:
        return set(self.judge.claims_by_agent.get(name, ()))

    def rejudge(self, dirty: set[str] | None = None, aged: bool = False) -> Snapshot:
        """Re-judge the changed tasks (and, with ``aged``, every task whose verdict can change
        with time alone: live claims, split brains, unsettled mismatches) and publish."""
        self._one_shot_guard()
        ids = set(dirty or ())
        if aged and self.live:
            ids |= self.judge.time_sensitive
        touched = self.judge.run(self._tasks, self._agents, self.clock(), self.live, ids)
        return self._publish(frozenset(touched | set(dirty or ())))

    def _publish(self, changed: frozenset[str]) -> Snapshot:
        self._generation += 1
        j = self.judge
        for pub in self._publishers:
            if j.full_pending:
                pub.reset()
            else:
                for tid in j.touched:
                    pub.touch(tid)
        j.full_pending = False
        j.touched.clear()
        snap = Snapshot(
            root=self.source.label, source_format=self.source.format, as_of=self.clock(),
            live=self.live, lanes=self.source.semantics.lanes, tasks=self._pub_tasks.publish(),
            agents=MappingProxyType(dict(self._agents)),
            verdicts=self._pub_verdicts.publish(),
            findings=j.findings(),
            problems=self.source.problems(), facts=self.judge.facts,
            action_hints=self.source.semantics.action_hints,
            kind_hints=self.source.semantics.kind_hints,
            id_prefix=self.source.semantics.id_prefix, id_width=self.source.semantics.id_width,
            subject_findings=tuple(f for f in self.judge.subject_findings
                                   if f.task_id not in self.judge.verdicts),
            side_labels=(self.source.semantics.record_label, self.source.semantics.file_label),
            generation=self._generation, changed=changed,
            by_task=self._pub_findings.publish(),
            state_counts=MappingProxyType(dict(j.state_counts)),
            severity_counts=MappingProxyType(dict(j.severity_counts)),
            tasks_by_severity=MappingProxyType(
                {sev: pub.publish().keys() for sev, pub in self._pub_severity.items()}))
        self.snapshot = snap
        return snap

    def _notify(self) -> None:
        """Hand the newest snapshot to subscribers (on the event loop, never from a thread)."""
        snap = self.snapshot
        if snap is None or self.paused:
            return
        for cb in list(self._subscribers):
            try:
                cb(snap)
            except Exception:  # a broken view must not kill the engine
                log.exception("subscriber failed")

    # ------------------------------------------------------------------ details on demand
    def trace(self, task_id: str) -> tuple[TrailEvent, ...]:
        """One merged timeline: the source's history (DB rows, notes), the file trail and
        the signals of the agent judged to hold the task."""
        events: list[TrailEvent] = []
        task = self.full_task(task_id)
        try:
            events.extend(self.source.history(task_id))
        except SourceError as exc:
            self.last_error = str(exc)
        if task is not None:
            events.extend(task.trail)
        v = self.judge.verdicts.get(task_id)
        names = {v.claimed_by} if v and v.claimed_by else set()
        for name in names:
            a = self._agents.get(name)
            if a is None:
                continue
            for s in a.signals:
                if s.task_id in (None, task_id):
                    events.append(TrailEvent(kind="SIGNAL", at=s.at, side=Side.AGENT,
                                             actor=name, detail=s.name))
        epoch = datetime.min.replace(tzinfo=UTC)
        return tuple(sorted(events, key=lambda e: e.at or epoch))

    def log_tail(self, agent_name: str, max_bytes: int = 16384) -> str:
        return self.source.log_tail(agent_name, max_bytes)

    # ------------------------------------------------------------------ live
    def subscribe(self, cb: Subscriber) -> Callable[[], None]:
        self._subscribers.append(cb)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(cb)
        return unsubscribe

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self._notify()

    async def start(self) -> Snapshot:
        if self.live:
            # The watcher starts first so nothing written during the scan is missed; once it
            # is known to be running, a stat-only pass catches up what happened before.
            self._tasks_running.append(asyncio.create_task(self._watch_files()))
        async with self._lock:
            snap = await asyncio.to_thread(self.scan)
        self._notify()
        if self.live:
            self.next_poll_at = self.clock() + timedelta(seconds=self.config.live.poll_interval_s)
            loop_tasks = [self._watch_marker(), self._poll_loop(), self._tick_loop(),
                          self._catch_up_when_watching(), self._second_look_loop()]
            self._tasks_running += [asyncio.create_task(c) for c in loop_tasks]
        return snap

    async def _catch_up_when_watching(self) -> None:
        try:
            await asyncio.wait_for(self._watch_ready.wait(), timeout=10)
        except TimeoutError:
            return
        async with self._lock:
            def work() -> None:
                dirty = self._take(self.source.rescan())
                if dirty:
                    self.rejudge(self._hold_born_findings(dirty))
            try:
                await asyncio.to_thread(work)
            except SourceError as exc:  # (the next poll tries again)
                self.last_error = str(exc)
            except Exception as exc:
                self.last_error = f"catching up failed: {exc!r}"
                log.exception("catching up failed")
        self.caught_up.set()
        self._notify()

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks_running:
            t.cancel()
        try:
            for t in self._tasks_running:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        finally:  # (a task that ended by Ctrl-C/SIGTERM re-raises it: close all the same)
            self._tasks_running = []
            self.source.close()

    async def poll_now(self) -> Snapshot | None:
        """Full reconciliation; a poll already running is waited for, not doubled."""
        if self._lock.locked():
            async with self._lock:
                return self.snapshot
        async with self._lock:
            try:
                snap = await asyncio.to_thread(self.scan)
                self.last_error = None
            except SourceError as exc:
                self.last_error = str(exc)
                snap = None
            except Exception as exc:  # keep the last good snapshot, say why
                self.last_error = f"poll failed: {exc!r}"
                log.exception("poll failed")
                snap = None
            self.last_poll_at = self.clock()
            self.next_poll_at = self.clock() + timedelta(
                seconds=self.config.live.poll_interval_s)
        if self._held:
            self._look_due.set()
        self._notify()
        return snap

    async def _second_look_loop(self) -> None:
        """Give every held task its second look when it is due."""
        while not self._stop.is_set():
            if not self._held:
                self._look_due.clear()
                waiter = asyncio.ensure_future(self._look_due.wait())
                stopper = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            due = min(h[0] for h in self._held.values())
            if await self._sleep(max(0.0, due - time.monotonic())):
                return
            await self._apply(second_look=True)

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            delay = self.config.live.poll_interval_s
            if self.next_poll_at is not None:
                delay = max(0.0, (self.next_poll_at - self.clock()).total_seconds())
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            await self.poll_now()

    async def _tick_loop(self) -> None:
        """Claims age with no writes at all: re-judge the time-sensitive set regularly."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(),
                                       timeout=self.config.live.rejudge_interval_s)
                return
            except TimeoutError:
                pass
            async with self._lock:
                try:
                    await asyncio.to_thread(self.rejudge, set(), True)
                except Exception as exc:
                    self.last_error = f"re-judge failed: {exc!r}"
            self._notify()

    async def _watch_marker(self) -> None:
        """The source's change marker (a DB's ``PRAGMA data_version`` and file stat, say),
        every ``[live] db_check_interval_s``; a new value means the source re-reads."""
        spec = self.source.watch_spec()
        marker = spec.marker
        if marker is None:
            return
        interval = self.config.live.db_check_interval_s
        if spec.marker_interval_s is not None:
            interval = min(interval, spec.marker_interval_s)
        while not self._stop.is_set():
            try:
                async with marker() as read:
                    last: Hashable | None = None
                    while not self._stop.is_set():
                        value = await read()
                        if last is not None and value != last:
                            await self._apply(marker_moved=True)
                        elif last is None and self.last_error \
                                and self.last_error.endswith(_CANNOT_WATCH):
                            self.last_error = None  # watching again
                        last = value
                        if await self._sleep(interval):
                            return
            except Exception as exc:  # a lost connection: say so, back off, open again
                self.last_error = f"{self.source.label}: {exc}{_CANNOT_WATCH}"
                if await self._sleep(interval * 5):
                    return
                await self._apply(marker_moved=True)  # catch up what the gap hid

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when the engine is stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

    async def _watch_files(self) -> None:
        from watchfiles import awatch

        paths = self.source.watch_spec().paths
        if not paths:
            self._watch_ready.set()
            return
        async for changes in awatch(*paths, stop_event=self._stop,
                                    debounce=self.config.live.debounce_ms, step=20,
                                    recursive=True, ignore_permission_denied=True,
                                    rust_timeout=500, yield_on_timeout=True):
            self._watch_ready.set()  # the first (possibly empty) batch: watching for real
            if changes:
                await self._apply(paths={path for _change, path in changes})

    async def _apply(self, paths: set[str] | None = None,
                     marker_moved: bool = False, second_look: bool = False) -> None:
        async with self._lock:
            def work() -> None:
                dirty: set[str] = set()
                looked: set[str] = set()
                if second_look:
                    now = time.monotonic()
                    looked = {tid for tid, h in self._held.items() if h[0] <= now}
                    delay = self.config.live.confirm_after_s
                    for tid in looked:  # counted first: a look that fails must not spin
                        _, seen, looks = self._held[tid]
                        self._held[tid] = (now + delay, seen, looks + 1)
                    dirty |= self._look_again(looked)
                if paths:
                    dirty |= self.apply_paths(paths)
                if marker_moved:
                    dirty |= self.apply_marker()
                dirty |= self._load_reviews()  # an intervention just reviewed a task
                self.rejudge(self._hold_born_findings(dirty, looked))
            try:
                await asyncio.to_thread(work)
            except SourceError as exc:
                self.last_error = str(exc)
            except Exception as exc:
                self.last_error = f"update failed: {exc!r}"
                log.exception("incremental update failed")
            if self._held:
                self._look_due.set()
        self._notify()
