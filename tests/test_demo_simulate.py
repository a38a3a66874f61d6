"""The live demo's simulation: Octopoid's own drift, and each injected fault, on real files + DB."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from core.config import load_config
from core.demo.simulate import Octopoid, Simulation, create_demo_root
from core.engine import Engine
from core.rules.base import SCORED_KINDS


def db_row(root: Path, tid: str) -> tuple:
    conn = sqlite3.connect(root / "state.db")
    try:
        return conn.execute("SELECT queue, claimed_by FROM tasks WHERE id=?", (tid,)).fetchone()
    finally:
        conn.close()


def test_octopoid_steps_drift_the_way_octopoid_does(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=1)
    octo = Octopoid(root)
    octo.create("aaaa0001", "One")
    octo.claim("aaaa0001", "impl-agent-1")
    assert octo.path("incoming", "aaaa0001").exists()  # DB-mode claim: file stays
    assert db_row(root, "aaaa0001") == ("claimed", "impl-agent-1")
    octo.fail("aaaa0001", "ValueError: x")
    assert octo.path("failed", "aaaa0001").exists()
    assert db_row(root, "aaaa0001") == ("failed", "impl-agent-1")  # claimed_by kept
    octo.retry("aaaa0001")
    text = octo.path("incoming", "aaaa0001").read_text()
    assert "RETRIED_AT:" in text and "## Error" in text  # the old error is left in place
    assert db_row(root, "aaaa0001")[0] == "failed"  # the DB never heard of the retry
    octo.create("aaaa0002", "Two")
    octo.claim("aaaa0002", "impl-agent-2")
    octo.needs_continuation("aaaa0002", "impl-agent-2")
    assert octo.path("needs_continuation", "aaaa0002").exists()
    assert db_row(root, "aaaa0002") == ("claimed", "impl-agent-2")  # no DB write


def test_simulation_runs_and_injects_every_fault(tmp_path: Path) -> None:
    root = create_demo_root(tmp_path, seed=3)
    sim = Simulation(root, seed=3)
    log: list[str] = []
    for _ in range(14):
        log += sim.step()
    text = "\n".join(log)
    for needle in ("claimed", "FAULT orphan", "FAULT corrupt", "died holding",
                   "DB-only reset"):
        assert needle in text, (needle, text)
    config, _ = load_config(root)
    snap = Engine(root, config).scan()
    kinds = {f.kind for f in snap.findings if f.kind in SCORED_KINDS}
    assert {"orphan_file", "corrupt_task", "split_brain"} <= kinds, kinds
    # judged a minute later (no pid checks with --as-of), the dead agent's claim is a zombie
    dead = next(a for a in sim.agents if not a.alive)
    later = Engine(root, config, as_of=datetime.now().astimezone() + timedelta(seconds=60)).scan()
    assert any(f.kind == "zombie_claim" and f.task_id == dead.task for f in later.findings)
