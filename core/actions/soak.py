"""Soak: randomized interventions against the demo's live simulated agents, some SIGKILLed at a
random journal step and recovered. Prints lost tasks, DB/file divergences introduced (both must
be 0), actions refused as stale, and action latency. ``python -m qwarden.core.actions.soak [N]``.

The agents run in a thread of this process; a killed intervention runs in a subprocess with
``QWARDEN_CRASH_AT``. Half the in-process actions race the agents freely; the other half (and
every killed one) are checked right after, with the agents paused, to be wholly before or
wholly after — the check must not see an agent's later write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from qwarden.core.actions.apply import CRASH_ENV, _history_rows, apply, read_row, recover
from qwarden.core.actions.journal import Journal
from qwarden.core.actions.plan import Plan, Refused, StalePlan, sha256
from qwarden.core.clihelp import scratch_dir
from qwarden.core.formats.octopoid.actions import make_plan

KINDS = {"failed": ["retry", "cancel", "clear-error"], "provisional": ["accept", "cancel"],
         "claimed": ["release", "retry"], "incoming": ["cancel", "escalate", "clear-error"],
         "done": ["mark-read"], "needs_continuation": ["retry"], "rejected": ["mark-read"]}
STEPS = ("intent", "file:0:tmp", "file:0:linked", "file:0:grabbed", "file:0", "rows", "commit",
         "done")
RUNNER = ("import json,sys\nfrom pathlib import Path\n"
          "from qwarden.core.actions.apply import apply\n"
          "from qwarden.core.actions.plan import Plan\napply(Path(sys.argv[1]), Plan.from_json("
          "json.loads(Path(sys.argv[2]).read_text())))\n")


def _sha(root: Path, rel: str | None) -> str | None:
    if rel is None:
        return None
    try:
        return sha256((root / rel).read_bytes())
    except FileNotFoundError:
        return None


def outcome_state(root: Path, plan: Plan, aid: int | None,
                  why: list[str] | None = None) -> str:
    """``after`` if every change of the plan is in place, ``before`` if none is, else
    ``between`` (a divergence qwarden introduced)."""
    after: list[bool] = []
    before: list[bool] = []
    conn = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
    try:
        n_hist = sum(r.op == "insert" and r.table == "task_history" for r in plan.rows)
        if n_hist:
            got = len(_history_rows(conn, aid)) if aid is not None else 0
            after.append(got == n_hist)
            before.append(got == 0)
        for r in plan.rows:
            if r.table != "tasks":
                continue
            cur = read_row(conn, "tasks", r.key)
            if r.op == "update":
                after.append(cur is not None and all(cur.get(c) == v for c, v in r.after.items()))
                before.append(cur is not None and all(cur.get(c) == (r.before or {}).get(c)
                                                      for c in r.after))
            else:
                after.append((cur is not None) == (r.op == "insert"))
                before.append((cur is None) == (r.op == "insert"))
    finally:
        conn.close()
    for f in plan.files:
        s, d = _sha(root, f.src), _sha(root, f.dst) if f.dst != f.src else None
        if f.kind == "write":
            after.append(s == f.after_sha)
            before.append(s == f.before_sha)
        elif f.kind == "create":
            after.append(d == f.after_sha)
            before.append(d is None)
        elif f.kind == "move":
            after.append(d == f.after_sha and s is None)
            before.append(s == f.before_sha and d is None)
    if all(after):
        return "after"
    if why is not None:
        why.append(f"after checks {after}, before checks {before}")
    return "before" if all(before) else "between"


def touched(root: Path, plan: Plan) -> tuple[Any, ...]:
    """The plan's rows, the task's history and the plan's files, as they are now."""
    conn = sqlite3.connect(f"file:{root / 'state.db'}?mode=ro", uri=True)
    try:
        rows = [read_row(conn, "tasks", r.key) for r in plan.rows if r.table == "tasks"]
        hist = conn.execute("SELECT * FROM task_history WHERE task_id = ?",
                            (plan.task_id,)).fetchall()
    finally:
        conn.close()
    files = [(rel, _sha(root, rel)) for f in plan.files for rel in (f.src, f.dst) if rel]
    return rows, hist, files


def _task_ids(root: Path) -> dict[str, str]:
    conn = sqlite3.connect(root / "state.db", timeout=10)
    try:
        return dict(conn.execute("SELECT id, queue FROM tasks").fetchall())
    finally:
        conn.close()


def soak(n: int = 1000, seed: int = 0, kill_rate: float = 0.1, base: Path | None = None,
         echo: Any = print) -> dict[str, Any]:
    """``base``: where the simulated queue goes, kept afterwards; default a temporary
    directory, removed however the soak ends."""
    with scratch_dir("qwarden-soak-", keep=base) as where:
        return _soak(n, seed, kill_rate, where, echo)


def _soak(n: int, seed: int, kill_rate: float, base: Path, echo: Any) -> dict[str, Any]:
    from qwarden.core.formats.octopoid.simulate import Simulation, create_demo_root

    root = create_demo_root(base / "demo", seed=seed)
    sim = Simulation(root, seed=seed, faults=True)
    agents_lock = threading.Lock()
    stop = threading.Event()
    agent_races = 0

    def agents() -> None:
        nonlocal agent_races
        while not stop.is_set():
            with agents_lock:
                try:
                    sim.step()
                except (FileNotFoundError, sqlite3.OperationalError):
                    agent_races += 1  # an agent racing our move, as real agents would
            time.sleep(0.001)

    rnd = random.Random(seed)
    stats: dict[str, Any] = {"done": 0, "stale": 0, "refused": 0, "killed": 0, "divergences": 0,
             "lost_tasks": 0}
    latency: list[float] = []
    diverged: list[str] = []
    seen: dict[str, bool] = {}
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    plan_file = base / "plan.json"
    t = threading.Thread(target=agents, daemon=True)
    t.start()
    try:
        for i in range(n):
            ids = _task_ids(root)
            for tid in ids:
                seen.setdefault(tid, True)
            tid = rnd.choice(sorted(ids))
            kind = rnd.choice(KINDS.get(ids[tid], ["escalate"]))
            try:
                plan = make_plan(root, kind, tid, actor="qwarden:soak", note=f"soak {i}",
                                 force=kind in ("accept", "release", "clear-error"))
            except Refused:
                stats["refused"] += 1
                continue
            if rnd.random() < kill_rate:
                plan_file.write_text(json.dumps(plan.to_json()))
                step = rnd.choice(STEPS)
                with agents_lock:  # paused: the check below must see only our own writes
                    proc = subprocess.run(
                        [sys.executable, "-c", RUNNER, str(root), str(plan_file)],
                        env={**env, CRASH_ENV: step}, capture_output=True, timeout=120)
                    stats["killed"] += proc.returncode == -signal.SIGKILL
                    recover(root)
                    with Journal(root) as j:
                        last = j.recent(1)
                    aid = last[0].id if last and last[0].plan.note == plan.note else None
                    why: list[str] = []
                    if proc.returncode == 1 and b"StalePlan" in proc.stderr:
                        stats["stale"] += 1  # refused before writing anything
                    elif outcome_state(root, plan, aid, why) == "between":
                        stats["divergences"] += 1
                        diverged.append(f"{kind} TASK-{tid} killed at {step} (rc "
                                        f"{proc.returncode}, aid {aid}: {why} "
                                        f"{proc.stderr[-300:]!r})")
                continue
            checked = rnd.random() < 0.5
            if checked:
                agents_lock.acquire()
                was = touched(root, plan)
            try:
                res = apply(root, plan)
                stats["done"] += 1
                latency.append(res.elapsed_ms)
                if checked and outcome_state(root, plan, res.action_id) != "after":
                    stats["divergences"] += 1
                    diverged.append(f"{kind} TASK-{tid} done but not all in place")
            except StalePlan:
                stats["stale"] += 1
                if checked and touched(root, plan) != was:
                    stats["divergences"] += 1
                    diverged.append(f"{kind} TASK-{tid} stale but not untouched")
            except Refused:
                stats["refused"] += 1
            finally:
                if checked:
                    agents_lock.release()
    finally:
        stop.set()
        t.join(timeout=30)
    with Journal(root) as j:
        for a in j.recent(100000):
            if a.state == "failed":
                stats["divergences"] += 1
                diverged.append(f"action {a.id} {a.kind} TASK-{a.task_id} failed: {a.error}")
        assert not j.unfinished()
    quarantined = {p.name.split("TASK-")[1][:8] for p in
                   (root / "shared" / "quarantine").glob("*.md")} \
        if (root / "shared" / "quarantine").is_dir() else set()
    for tid in seen:
        if not any((root / "shared" / "queue").glob(f"*/TASK-{tid}.md")) \
                and tid not in quarantined:
            stats["lost_tasks"] += 1
    stats["agent_races"] = agent_races
    stats["diverged"] = diverged
    if latency:
        lat = sorted(latency)
        stats["latency_ms_p50"] = round(statistics.median(lat), 2)
        stats["latency_ms_p95"] = round(lat[int(len(lat) * 0.95) - 1 if len(lat) > 1 else 0], 2)
    echo(f"soak: {n} interventions against live agents ({stats['killed']} SIGKILLed and "
         f"recovered)\n  lost tasks: {stats['lost_tasks']}\n  DB/file divergences introduced: "
         f"{stats['divergences']}\n  refused as stale: {stats['stale']}  (refused otherwise: "
         f"{stats['refused']}, done: {stats['done']})\n  action latency: p50 "
         f"{stats.get('latency_ms_p50', '-')} ms, p95 {stats.get('latency_ms_p95', '-')} ms"
         + "".join(f"\n    ! {d}" for d in diverged))
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qwarden.core.actions.soak")
    p.add_argument("n", nargs="?", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kill-rate", type=float, default=0.1)
    p.add_argument("--dir", type=Path, help="keep the soak's queue here (default: a temporary "
                                            "directory, removed at the end)")
    a = p.parse_args(argv)
    s = soak(a.n, a.seed, a.kill_rate, base=a.dir)
    return 0 if s["lost_tasks"] == 0 and s["divergences"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
