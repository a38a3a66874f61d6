"""The engine following a simulated coordination fleet: a worker that dies holding a claim
becomes a zombie claim on the format's clock, a torn queue write keeps the last good tasks
on show with a corrupt_queue_file finding, and the coordinator's repair clears it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qwarden.core.config import Config, CoordinationOptions, LiveOptions
from qwarden.core.formats import open_engine
from qwarden.core.formats.coordination import simulate as S
from tests.test_engine_live import wait_for


async def test_engine_follows_a_coordination_fleet(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    sim = S.Simulation(root, seed=1, workers=3, demo_clock=False)
    for _ in range(3):
        sim.tick()
    cfg = Config(live=LiveOptions(rejudge_interval_s=0.3, confirm_after_s=0.2),
                 coordination=CoordinationOptions(dead_after_s=2.0, stale_after_s=1.0))
    engine = open_engine(root, cfg)
    snap = await engine.start()
    try:
        assert snap.source_format == "coordination"
        # a worker claims and dies: zombie_claim once its silence passes 2 s
        victim = "worker-1"
        tid = S.add_task(root, "die holding me", tid=777_000)
        got = S.claim(root, victim, None)
        assert got is not None
        sid = str(got)
        snap = await wait_for(engine, lambda s: sid in s.tasks
                              and s.tasks[sid].record is not None
                              and s.tasks[sid].record.queue == "in_progress")
        snap = await wait_for(engine, lambda s: any(
            f.kind == "zombie_claim" for f in s.findings_for(sid)), timeout=10)
        assert tid is not None
        # a torn write: the tasks stay on show, the queue gets its finding
        n = len(snap.tasks)
        S.torn_write(root, sim.rng)
        snap = await wait_for(engine, lambda s: any(
            f.kind == "corrupt_queue_file" and f.task_id == "queue" for f in s.findings))
        assert len(snap.tasks) == n
        # the coordinator's own repair clears it
        S.validate_queue(root)
        snap = await wait_for(engine, lambda s: not any(
            f.kind == "corrupt_queue_file" and f.task_id == "queue" for f in s.findings))
    finally:
        await engine.stop()
    await asyncio.sleep(0)
