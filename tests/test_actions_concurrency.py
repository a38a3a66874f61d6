"""Interventions while the demo's simulated agents keep writing the same queue: every action
either lands whole or is refused as stale; nothing is lost, nothing left half-done."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

from qwarden.core.actions.apply import apply, marker
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Refused, StalePlan
from qwarden.core.formats.octopoid.actions import make_plan, read_state
from qwarden.core.formats.octopoid.simulate import Simulation, create_demo_root

KINDS = {"failed": ["retry", "cancel"], "provisional": ["accept", "cancel"],
         "claimed": ["release", "retry"], "incoming": ["cancel", "escalate"],
         "done": ["mark-read"], "needs_continuation": ["retry"]}


def _ids(root: Path) -> dict[str, str]:
    conn = sqlite3.connect(root / "state.db", timeout=5)
    try:
        return dict(conn.execute("SELECT id, queue FROM tasks").fetchall())
    finally:
        conn.close()


def test_actions_against_live_agents(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path / "demo", seed=3)
    sim = Simulation(root, seed=3, faults=False)
    stop = threading.Event()
    sim_errors: list[BaseException] = []

    def agents() -> None:
        while not stop.is_set():
            try:
                sim.step()
            except (FileNotFoundError, sqlite3.OperationalError) as exc:
                sim_errors.append(exc)  # an agent racing our move, as real agents would

    for _ in range(5):
        sim.step()
    t = threading.Thread(target=agents, daemon=True)
    t.start()
    rnd = random.Random(7)
    outcome = {"done": 0, "stale": 0, "refused": 0}
    seen: set[str] = set()
    try:
        for _ in range(40):
            ids = _ids(root)
            seen |= set(ids)
            tid = rnd.choice(sorted(ids))
            kind = rnd.choice(KINDS.get(ids[tid], ["escalate"]))
            try:
                plan = make_plan(root, kind, tid, actor="qwarden:conc", note="concurrency",
                                 force=kind in ("accept", "release"))
                apply(root, plan)
                outcome["done"] += 1
            except StalePlan:
                outcome["stale"] += 1
            except Refused:
                outcome["refused"] += 1
    finally:
        stop.set()
        t.join(timeout=10)
    assert outcome["done"] > 5, outcome
    with Journal(root) as j:
        assert j.unfinished() == []
        done = [a for a in j.recent(1000) if a.state == "done"]
    conn = sqlite3.connect(root / "state.db")
    details = [r[0] for r in conn.execute("SELECT details FROM task_history")]
    conn.close()
    for a in done:
        if a.plan.rows:  # its DB transaction is there, exactly once
            assert sum(d is not None and d.endswith(marker(a.id)) for d in details) == 1
    # no task lost: every row still has its bytes in a queue dir or in quarantine
    quarantined = {p.name.split("TASK-")[1][:8]
                   for p in (root / "shared" / "quarantine").glob("*.md")}
    for tid in seen:
        st = read_state(root, tid)
        assert st.row is not None
        assert st.files or tid in quarantined, f"TASK-{tid} lost its file"
