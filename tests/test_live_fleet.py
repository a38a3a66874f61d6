"""qwarden beside a live simulated fleet: never wrong on screen, and every fault found in time.

Agents and a scheduler in threads run Octopoid's own lifecycle steps
(``core.formats.octopoid.writer``) with their two-step writes in the real order — the file
then the row to create, submit, fail and
accept; the row then the trail to claim — and a pause between the two halves wider than
Octopoid's own (0–80 ms), so one-sided states are common. Faults are injected now and again:
an orphan file, a corrupt file, a vanished file, a DB-only reset of a claim while its agent
keeps working, an agent that dies holding its claim. The engine follows all of it; every
snapshot it publishes is checked: no scored finding on a task the simulation knows is healthy,
and each fault's finding published within its expected latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qwarden.core.config import Config, LiveOptions, Thresholds
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid import writer as ow
from qwarden.core.model import Snapshot

STALE_S, ZOMBIE_S = 5.0, 10.0
CONFIG = Config(thresholds=Thresholds(stale_after_s=STALE_S, zombie_after_s=ZOMBIE_S,
                                      finished_grace_s=5, mismatch_grace_s=300),
                live=LiveOptions(rejudge_interval_s=0.5))
# How late each fault's finding may be published after the fault (the engine's own delays:
# a file event ~0.1 s, a DB write seen within db_check_interval_s, the second look
# confirm_after_s; time-based kinds within rejudge_interval_s of their threshold), with room
# for a loaded 2-core machine.
SLACK_S = 2.5
EXPECTED_LATENCY = {"orphan_file": 0.6, "corrupt_task": 0.6, "missing_file": 0.6,
                    "split_brain": 1.5, "stale_heartbeat": STALE_S + 0.5,
                    "zombie_claim": ZOMBIE_S + 0.5}
OPERATIONS = 500
FAULT_EVERY = 25  # operations
FLEET = 5


@dataclass
class Fault:
    task_id: str
    kinds: tuple[str, ...]
    at: float  # time.monotonic() of the injection (or of the last sign of life)
    found: dict[str, float] = field(default_factory=dict)  # kind -> latency seen


class Fleet:
    """The simulated agents and scheduler. ``faulty`` is what it knows is not healthy."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.waiting: list[str] = []  # created, not yet claimed, healthy
        self.provisional: list[str] = []
        self.faults: dict[str, Fault] = {}
        self.working: dict[str, str] = {}  # agent -> task
        self.keep_working: dict[str, float] = {}  # task -> work on until (monotonic)
        self.dying: set[str] = set()
        self.ops = 0
        self.errors: list[BaseException] = []

    def gap(self) -> None:
        time.sleep(self.rnd.uniform(0, 0.08))

    @contextlib.contextmanager
    def slow_transaction(self, root: Path) -> Iterator[object]:
        """Octopoid's transaction, with a pause before it (file then row) and after it (row
        then trail): the one-sided moment of each two-step write, widened."""
        self.gap()
        with _REAL_TRANSACTION(root) as conn:
            yield conn
        self.gap()

    def count(self, n: int = 1) -> None:
        with self.lock:
            self.ops += n

    def _word(self) -> str:
        # letters only (no digits or hex runs the error signature would mask): no two
        # failures share a signature, so repeated_failure has nothing to group
        return "".join(self.rnd.choice(string.ascii_lowercase[6:]) for _ in range(12))

    # ---------------------------------------------------------------- agents
    def agent(self, name: str) -> None:
        try:
            while not self.stop.is_set():
                with self.lock:
                    tid = self.waiting.pop(0) if self.waiting else None
                if tid is None:
                    time.sleep(0.05)
                    continue
                ow.claim(self.root, tid, name)  # the row, then the trail
                self.count()
                now = ow.now_local()
                ow.write_agent_state(self.root, name, True, os.getpid(), now,
                                     current_task=tid)
                ow.write_current_task(self.root, name, tid)
                with self.lock:
                    self.working[name] = tid
                beats = self.rnd.randint(2, 5)
                while beats > 0 or time.monotonic() < self.keep_working.get(tid, 0):
                    if name in self.dying:
                        return  # a dead agent: its claim stays, its signals stop
                    if self.stop.is_set():
                        break  # the run is over: finish the task like any other
                    ow.write_heartbeat(self.root, name)
                    ow.write_status(self.root, name, tid, 20 * (6 - beats))
                    time.sleep(0.08)
                    beats -= 1
                with self.lock:  # done working: from now on no fault may pick this task
                    if name in self.dying:
                        return
                    self.working.pop(name, None)
                if self.rnd.random() < 0.8:
                    ow.submit(self.root, tid, self.rnd.randint(1, 5), 12)  # file, then row
                    with self.lock:
                        self.provisional.append(tid)
                else:
                    ow.fail(self.root, tid, f"ValueError: {self._word()}")  # file, then row
                self.count()
                ow.clear_current_task(self.root, name)
                ow.write_agent_state(self.root, name, False, None, now, ow.now_local(),
                                     last_exit_code=0)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    # ---------------------------------------------------------------- scheduler
    def scheduler(self) -> None:
        try:
            tick = faults = 0
            while not self.stop.is_set():
                tick += 1
                with self.lock:
                    need = len(self.waiting) < FLEET + 2
                    ready = self.provisional[:] if tick % 3 == 0 else []
                    self.provisional = [] if ready else self.provisional
                if need:
                    tid = ow.create_task(self.root, f"task {tick}")  # file, then row
                    with self.lock:
                        self.waiting.append(tid)
                    self.count()
                for tid in ready:
                    ow.accept(self.root, tid)  # file to done/, then the row
                    self.count()
                if self.ops >= (faults + 1) * FAULT_EVERY and self.inject(faults):
                    faults += 1  # (one that found nothing to act on is tried next tick)
                time.sleep(0.02)
        except BaseException as exc:
            self.errors.append(exc)

    def _mark(self, tid: str, *kinds: str, at: float | None = None) -> None:
        with self.lock:
            self.faults[tid] = Fault(tid, kinds, time.monotonic() if at is None else at)

    def inject(self, n: int) -> bool:
        """Fault number ``n``; False when there was nothing to inject it into just now."""
        tid: str | None
        kind = ("orphan", "corrupt", "missing", "reset", "orphan", "corrupt", "death")[n % 7]
        if kind == "orphan":
            tid = f"{self.rnd.getrandbits(32):08x}"
            self._mark(tid, "orphan_file")
            ow.write_atomic(ow.task_path(self.root, "incoming", tid),
                            ow.task_text(tid, "hand-written", ow.now_local()))
        elif kind == "corrupt":
            tid = f"{self.rnd.getrandbits(32):08x}"
            self._mark(tid, "corrupt_task")
            ow.write_atomic(ow.task_path(self.root, "incoming", tid), b"\x00\xff garbage")
        elif kind == "missing":  # a task no agent was given: its file vanishes
            tid = ow.create_task(self.root, "to vanish")
            time.sleep(1.0)  # long enough to be seen whole first
            self._mark(tid, "missing_file")
            ow.task_path(self.root, "incoming", tid).unlink()
        elif kind == "reset":
            with self.lock:  # (an agent leaves ``working`` under the lock before it submits)
                busy = [t for t in self.working.values() if t not in self.faults]
                tid = busy[0] if busy else None
                if tid is not None:
                    self.keep_working[tid] = time.monotonic() + 4.0
                    self.faults[tid] = Fault(tid, ("split_brain",), time.monotonic())
            if tid is None:
                return False
            ow.reset_stuck_claimed(self.root, tid)  # DB only; the agent keeps working
        elif kind == "death":
            with self.lock:
                busy = [(a, t) for a, t in self.working.items() if t not in self.faults]
                if busy:
                    name, tid = busy[0]
                    # its last heartbeat was at most one beat ago: the clock starts there
                    self.faults[tid] = Fault(tid, ("stale_heartbeat", "zombie_claim"),
                                             time.monotonic() - 0.1)
                    self.dying.add(name)
                else:
                    return False
        self.count()
        return True


_REAL_TRANSACTION = ow.transaction


async def test_no_false_alarm_and_every_fault_found_beside_a_live_fleet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = ow.init_root(tmp_path)
    fleet = Fleet(root, seed=8)
    monkeypatch.setattr(ow, "transaction", fleet.slow_transaction)
    engine = open_engine(root, CONFIG)
    false_alarms: list[tuple[float, str, str, str]] = []
    seen = 0

    def check(snap: Snapshot) -> None:
        nonlocal seen
        seen += 1
        now = time.monotonic()
        with fleet.lock:
            faults = dict(fleet.faults)
        for f in snap.findings:
            if not f.scored:
                continue
            fault = faults.get(f.task_id)
            if fault is None:
                false_alarms.append((now, f.task_id, f.kind, f.summary))
            elif f.kind in fault.kinds and f.kind not in fault.found:
                fault.found[f.kind] = now - fault.at

    await engine.start()
    engine.subscribe(check)
    await asyncio.wait_for(engine.caught_up.wait(), timeout=15)
    threads = [threading.Thread(target=fleet.agent, args=(f"agent-{i}",), daemon=True)
               for i in range(FLEET)]
    threads.append(threading.Thread(target=fleet.scheduler, daemon=True))
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 150
        while fleet.ops < OPERATIONS and time.monotonic() < deadline and not fleet.errors:
            await asyncio.sleep(0.2)
        fleet.stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 10)
        # every fault gets its full expected latency to show
        with fleet.lock:
            last = max((f.at + EXPECTED_LATENCY[k] for f in fleet.faults.values()
                        for k in f.kinds), default=0)
        while time.monotonic() < last + SLACK_S and any(
                len(f.found) < len(f.kinds) for f in fleet.faults.values()):
            await asyncio.sleep(0.2)
    finally:
        fleet.stop.set()
        snap = engine.snapshot
        for f in fleet.faults.values():  # what a missed fault looked like at the end
            if len(f.found) < len(f.kinds) and snap is not None:
                v = snap.verdicts.get(f.task_id)
                print("missed:", f.task_id, f.kinds, f.found, v and v.reason,
                      [x.kind for x in snap.findings_for(f.task_id)])
        await engine.stop()
    assert not fleet.errors, fleet.errors
    assert fleet.ops >= OPERATIONS, f"only {fleet.ops} operations"
    assert seen > 50  # the engine really followed (one snapshot per change)
    assert not false_alarms, false_alarms[:10]
    injected = {k for f in fleet.faults.values() for k in f.kinds}
    assert injected >= set(EXPECTED_LATENCY), [f.kinds for f in fleet.faults.values()]
    late = [(f.task_id, k, f.found.get(k)) for f in fleet.faults.values() for k in f.kinds
            if f.found.get(k) is None or f.found[k] > EXPECTED_LATENCY[k] + SLACK_S]
    assert not late, late
    figures = {k: sorted(f.found[k] for f in fleet.faults.values() if k in f.found)
               for k in EXPECTED_LATENCY}
    print(f"\nlive fleet: {fleet.ops} operations, {seen} snapshots, "
          f"{len(false_alarms)} false alarms; detection latency (s) per kind: "
          + ", ".join(f"{k} {min(v):.2f}–{max(v):.2f} (n={len(v)})"
                      for k, v in figures.items() if v))
