"""Simulated worker processes claim through their own lock while qwarden resets a dead
worker's tasks through its actions: no claim is lost, no entry dropped, and a reset never
lands on a live worker's claim. And qwarden really waits for the workers' lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from qwarden.core.actions.plan import Refused, StalePlan
from qwarden.core.config import Config
from qwarden.core.formats.coordination import actions as A
from qwarden.core.formats.coordination import simulate as S
from qwarden.core.formats.coordination.lock import LockTimeout, queue_lock
from tests.coord_util import entry, write_state

N_DEAD = 30
N_FREE = 60


def _worker(root: str, name: str, seconds: float, seed: int) -> None:
    import random

    rng = random.Random(seed)
    r = Path(root)
    S.register(r, name, ["backend"])
    log = r / f"claims-{name}.jsonl"
    end = time.monotonic() + seconds
    holding = None
    while time.monotonic() < end:
        S.heartbeat(r, name)
        if holding is None:
            tid = S.claim(r, name, ["backend"])
            if tid is not None:
                holding = tid
                with open(log, "a") as f:
                    f.write(json.dumps({"claimed": tid}) + "\n")
        elif rng.random() < 0.4:
            ok = S.complete(r, name, holding)
            with open(log, "a") as f:
                f.write(json.dumps({"completed": holding, "ok": ok}) + "\n")
            holding = None
        time.sleep(rng.uniform(0, 0.01))


def test_workers_and_resets_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "q"
    entries = [entry(1_000 + i, "in_progress", "worker-dead", claim_age_s=900)
               for i in range(N_DEAD)]
    entries += [entry(5_000 + i) for i in range(N_FREE)]
    write_state(root, entries, {})
    all_ids = {e["id"] for e in entries}
    ctx = mp.get_context("fork")
    names = [f"w{i}" for i in range(4)]
    procs = [ctx.Process(target=_worker, args=(str(root), n, 3.0, i))
             for i, n in enumerate(names)]
    for p in procs:
        p.start()
    done, stale = [], 0
    pending = [str(1_000 + i) for i in range(N_DEAD)]
    while pending:
        tid = pending.pop(0)
        try:
            p = A.plan(root, "reset", tid, note="worker-dead is gone")
            done.append(A.apply(root, p))
        except StalePlan:
            stale += 1  # a worker wrote between plan and apply: plan again
            pending.append(tid)
        time.sleep(0.005)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    q = json.loads((root / "task-queue.json").read_text())
    assert {e["id"] for e in q} == all_ids  # no entry dropped, none added
    assert len(q) == len(all_ids)
    by_id = {e["id"]: e for e in q}
    assert len(done) == N_DEAD
    # every claim a worker made is still its own (in progress, or completed by it)
    n_claims = 0
    for n in names:
        log = root / f"claims-{n}.jsonl"
        events = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
        finished = {e["completed"]: e["ok"] for e in events if "completed" in e}
        for e in events:
            if "claimed" not in e:
                continue
            n_claims += 1
            t = by_id[e["claimed"]]
            assert t["claimed_by"] == n, (e, t)
            if e["claimed"] in finished:
                assert finished[e["claimed"]] is True  # its completion found its claim
                assert t["status"] == "completed" and t["completed_by"] == n
            else:
                assert t["status"] == "in_progress"
    assert n_claims > 10
    # no reset touched a live claim: the dead worker's tasks are pending or a live worker's
    for i in range(N_DEAD):
        t = by_id[1_000 + i]
        assert t["claimed_by"] in (None, *names)
        assert t["metadata"]["reset_count"] == 1
    # the reset tasks were claimed again by the live workers (they raced and it held)
    assert any(by_id[1_000 + i]["claimed_by"] in names for i in range(N_DEAD))


def test_actions_wait_for_the_workers_lock(tmp_path: Path) -> None:
    root = tmp_path / "q"
    write_state(root, [entry(1, "in_progress", "gone", claim_age_s=900)], {})
    p = A.plan(root, "reset", "1")
    before = (root / "task-queue.json").read_bytes()
    cfg = Config.model_validate({"coordination": {"lock_timeout_s": 0.3}})
    ctx = mp.get_context("fork")
    held = ctx.Event()

    def hold() -> None:
        with queue_lock(root):
            held.set()
            time.sleep(1.5)

    proc = ctx.Process(target=hold)
    proc.start()
    assert held.wait(5)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        A.apply(root, p, cfg)
    assert time.monotonic() - t0 >= 0.3
    assert (root / "task-queue.json").read_bytes() == before
    proc.join()
    A.apply(root, p, cfg)  # once released, it goes through
    assert json.loads((root / "task-queue.json").read_text())[0]["status"] == "pending"


def test_a_claim_between_plan_and_apply_makes_the_plan_stale(tmp_path: Path) -> None:
    root = tmp_path / "q"
    write_state(root, [entry(1, "in_progress", "gone", claim_age_s=900)], {})
    p = A.plan(root, "reset", "1")

    def touch(q: list) -> bool:
        q[0]["claimed_by"] = "w-new"
        return True
    S.update_queue(root, touch)
    after_worker = (root / "task-queue.json").read_bytes()
    with pytest.raises(StalePlan):
        A.apply(root, p)
    assert (root / "task-queue.json").read_bytes() == after_worker
    with pytest.raises(Refused):  # (a new plan: w-new is absent, so dead: allowed)
        A.plan(root, "retry", "1")
