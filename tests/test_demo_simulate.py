"""The live demo's simulation: Octopoid's own drift, and each injected fault, on real files + DB."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from qwarden.core.config import load_config
from qwarden.core.formats import open_engine
from qwarden.core.formats.octopoid import writer as ow
from qwarden.core.formats.octopoid.simulate import Simulation, create_demo_root
from qwarden.core.rules.base import SCORED_KINDS


def db_rows(root: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(root / "state.db")
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT id, queue, claimed_by FROM tasks")}
    finally:
        conn.close()


def lanes(root: Path) -> Counter[str]:
    return Counter(q for q in ow.QUEUES for _ in ow.queue_dir(root, q).glob("TASK-*.md"))


def test_demo_root_starts_with_every_lane_and_idle_agents(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=1)
    assert (tmp_path / "qwarden.toml").is_file()
    files = lanes(root)
    assert sum(files.values()) == len(db_rows(root)) == 31
    assert {"incoming", "provisional", "done", "failed", "escalated"} <= set(files)
    agents = sorted(p.name for p in (root / "agents").iterdir())
    assert agents == ["impl-agent-0"] + [f"impl-agent-{n}" for n in range(1, 7)]
    assert json.loads((root / "agents/impl-agent-3/state.json").read_text())["running"] is False
    # a fresh demo is healthy apart from Octopoid's own everyday drift
    config, _ = load_config(root)
    snap = open_engine(root, config).scan()
    assert {f.kind for f in snap.findings if f.kind in SCORED_KINDS} <= {"file_db_mismatch"}


def test_simulation_runs_and_injects_every_fault(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=1)
    sim = Simulation(root, seed=1)
    log: list[str] = []
    for _ in range(16):
        log += sim.step()
    text = "\n".join(log)
    for needle in (" claimed ", " submitted ", " failed ", "new task", "FAULT orphan",
                   "FAULT corrupt", "died holding", "DB-only reset"):
        assert needle in text, (needle, text)
    # each step leaves Octopoid's kind of state behind: rows and files for every task
    rows = db_rows(root)
    assert any(q == "claimed" for q, _ in rows.values())
    assert any(q == "provisional" for q, _ in rows.values())
    working = next(a for a in sim.agents if a.alive and a.task)
    assert ow.find_task_file(root, working.task) is not None  # type: ignore[arg-type]
    status = json.loads((root / "agents" / working.name / "status.json").read_text())
    assert status["task_id"] == working.task
    assert (root / "agents" / working.name / "stdout.log").stat().st_size > 0
    assert (root / "agents" / working.name / "heartbeat").read_text().endswith("Z\n")

    config, _ = load_config(root)
    snap = open_engine(root, config).scan()
    kinds = {f.kind for f in snap.findings if f.kind in SCORED_KINDS}
    assert {"orphan_file", "corrupt_task", "split_brain"} <= kinds, kinds
    # judged a minute later (no pid checks with --as-of), the dead agent's claim is a zombie
    dead = next(a for a in sim.agents if not a.alive)
    assert rows[dead.task] == ("claimed", dead.name)  # type: ignore[index]
    state = json.loads((root / "agents" / dead.name / "state.json").read_text())
    assert state["running"] is True  # it died without anyone noticing
    later = open_engine(root, config,
                        as_of=datetime.now().astimezone() + timedelta(seconds=60)).scan()
    assert any(f.kind == "zombie_claim" and f.task_id == dead.task for f in later.findings)


def test_long_run_covers_continuations_resumes_and_reviews(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=1)
    sim = Simulation(root, seed=1, faults=False)
    log = [line for _ in range(16) for line in sim.step()]
    text = "\n".join(log)
    for needle in ("ran out of turns", "resumed", "scheduler accepted", "gatekeeper rejected",
                   "scheduler retried"):
        assert needle in text, needle
    assert not any(line.startswith("FAULT") for line in log)
    assert list((root / "shared" / "notes").glob("TASK-*.md"))
    assert all(a.alive for a in sim.agents)
    # needs_continuation wrote no DB row: those files sit beside a DB row still claimed
    rows = db_rows(root)
    for p in ow.queue_dir(root, "needs_continuation").glob("TASK-*.md"):
        assert rows[p.name[5:-3]][0] == "claimed"


def test_agent_survives_its_task_being_moved_away(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=2)
    sim = Simulation(root, seed=2, faults=False)
    while not any(a.task for a in sim.agents):
        sim.step()
    a = next(a for a in sim.agents if a.task)
    path = ow.find_task_file(root, a.task)  # type: ignore[arg-type]
    assert path is not None
    tid = a.task
    path.unlink()  # an operator removed it mid-run
    a.work_left = 1  # its next tick finishes: the step must not crash on the vanished file
    did = sim.step()
    assert f"{a.name} lost {tid} (file moved away)" in did
    assert a.task is None
    assert json.loads((root / "agents" / a.name / "state.json").read_text())["running"] is False


def test_run_steps_until_stopped(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=4)
    sim = Simulation(root, seed=4, tick_s=0.01)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sim.run(stop))
        while sim.ticks < 5:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(main())
    assert sim.ticks >= 5


def test_an_early_fault_waits_until_it_can_fire(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=6)
    sim = Simulation(root, seed=6)
    for a in sim.agents:  # nobody has claimed anything yet when the death is due
        a.task = None
    sim.ticks = 6
    first = sim._faults()  # tick 6: the death is due, but no agent holds a claim
    assert not any("died" in line for line in first) and "death" in sim.pending_faults
    log: list[str] = []
    for _ in range(6):
        log += sim.step()
    assert any("died holding" in line for line in log)
    assert "death" not in sim.pending_faults
