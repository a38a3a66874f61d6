"""``qwarden demo --format coordination --generate N --out DIR``: a static state of the
coordination files with a known anomaly mix, and ``truth.json``.

No runnable implementation of the design exists, so this writes every shape the design (and
what fleets made of it) leaves: integer-millisecond and ``task-…`` ids, ``claimed_at`` or
``started_at``, ``worker-status.json`` as a map of workers or (``workers_shape="flat"``) one
flat worker object, comms lines ``{timestamp, agent, message}`` and ``{from, to, message}``,
naive local ``isoformat()`` stamps like the design's ``datetime.now().isoformat()``.

Each scenario trips exactly the kinds it names in the truth and nothing else; every other
task and worker is healthy (``[]``). Deterministic per seed.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.formats.coordination import layout
from qwarden.core.timefmt import iso, parse_local_iso

GENERATED_AT = datetime(2026, 11, 22, 22, 0, 0)  # naive local, like the design's stamps
AS_OF = GENERATED_AT + timedelta(minutes=10)
SKILLS = ("backend", "api", "database", "frontend", "react", "ui", "testing", "pytest", "docs")
WORKER_CAPS = (("backend", "api", "database"), ("frontend", "react", "ui"),
               ("testing", "pytest"), ("backend", "api", "database", "docs"))
DESCRIPTIONS = ("Create user authentication API endpoint", "Write tests for auth endpoint",
                "Build React login component", "Add pagination to the posts API",
                "Migrate the comments table", "Document the search endpoint",
                "Fix flaky websocket test", "Render avatars in the sidebar")
CONTEXT_DOCS = ("docs/api-spec.md", "docs/ui-design.md", "docs/database-schema.md")
ERROR_POOL = ("TimeoutError: worker gave up after {n} s waiting for the API",
              "AssertionError: expected {n} rows, got {m}",
              "ModuleNotFoundError: No module named 'bcrypt'")


def _t(seconds_before: float) -> datetime:
    return AS_OF - timedelta(seconds=seconds_before)


def _s(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def _word(i: int) -> str:
    """A unique lower-case word per i (letters survive the error-signature masks)."""
    out = ""
    i += 26
    while i:
        i, r = divmod(i, 26)
        out = chr(97 + r) + out
    return out


@dataclass
class Gen:
    n: int
    rng: random.Random
    str_ids: float  # share of ``task-…`` ids
    next_ms: int = int(GENERATED_AT.timestamp() * 1000) - 86_400_000
    entries: list[dict[str, Any]] = field(default_factory=list)
    raw_items: list[Any] = field(default_factory=list)  # what the file holds, in order
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    comms: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    truth: dict[str, list[str]] = field(default_factory=dict)
    scenarios: dict[str, str] = field(default_factory=dict)
    missing_files: set[str] = field(default_factory=set)  # instruction files not written
    holds: dict[str, int] = field(default_factory=dict)  # worker -> in_progress held
    live: list[str] = field(default_factory=list)

    def new_id(self) -> Any:
        self.next_ms += self.rng.randint(1, 900)
        if self.rng.random() < self.str_ids:
            return f"task-{self.next_ms}-{_word(len(self.entries))}"
        return self.next_ms

    def say(self, at: datetime, agent: str, message: str, to: str | None = None) -> None:
        if to is not None or self.rng.random() < 0.3:
            obj: dict[str, Any] = {"from": agent, "to": to or "all", "message": message,
                                   "timestamp": _s(at)}
        else:
            obj = {"timestamp": _s(at), "agent": agent, "message": message}
        self.comms.append((at, obj))

    def worker(self, name: str, caps: tuple[str, ...], hb_age: float, *,
               claimed: datetime | None = None, completed: datetime | None = None,
               status: str = "active") -> None:
        self.workers[name] = {
            "status": status, "capabilities": list(caps),
            "registered_at": _s(GENERATED_AT - timedelta(hours=3)),
            "last_heartbeat": _s(_t(hb_age)),
            "last_task_claimed": _s(claimed), "last_task_completed": _s(completed)}

    def task(self, status: str, *, kinds: list[str] | None = None, scenario: str = "",
             claimed_by: str | None = None, claim_age: float = 300.0,
             skills: tuple[str, ...] = (), result: Any = "ok", error: str | None = None,
             depends_on: list[str] | None = None, retry_count: int = 0,
             context: tuple[str, ...] = (), assigned_to: str | None = None,
             write_file: bool = True, announce: bool = True) -> dict[str, Any]:
        raw_id = self.new_id()
        tid = str(raw_id)
        created = _t(claim_age + self.rng.randint(60, 3600))
        claimed_at = _t(claim_age) if claimed_by else None
        e: dict[str, Any] = {
            "id": raw_id, "description": self.rng.choice(DESCRIPTIONS),
            "instruction_file": layout.instruction_name(tid),
            "context_files": list(context), "assigned_to": assigned_to, "status": status,
            "created_at": _s(created), "claimed_by": claimed_by}
        # the two spellings of the claim time both occur
        e["started_at" if self.rng.random() < 0.3 else "claimed_at"] = _s(claimed_at)
        done_at = _t(max(0.0, claim_age - self.rng.randint(5, max(6, int(claim_age) - 1))))
        if status in ("completed", "failed"):
            e["completed_by"] = claimed_by
            e["completed_at"] = _s(done_at)
        else:
            e["completed_by"] = None
            e["completed_at"] = None
        if status == "completed":
            e["result"] = ({"files_created": ["src/x.py"], "tests_passed": True,
                            "status": "success"} if result == "ok" else result)
        else:
            e["result"] = None
        if error is not None:
            e["error"] = error
        meta: dict[str, Any] = {"estimated_minutes": self.rng.choice((10, 15, 30))}
        if skills:
            meta["required_skills"] = list(skills)
        if depends_on:
            meta["depends_on"] = depends_on
        if retry_count:
            meta["retry_count"] = retry_count
        e["metadata"] = meta
        self.entries.append(e)
        self.raw_items.append(e)
        self.truth[tid] = sorted(kinds or [])
        if scenario:
            self.scenarios[tid] = scenario
        if not write_file:
            self.missing_files.add(tid)
        if claimed_by and claimed_at is not None and announce:
            self.say(claimed_at + timedelta(milliseconds=200), claimed_by,
                     f"Claimed task {tid}: {e['description']}")
        if status == "completed" and claimed_by:
            self.say(done_at, claimed_by, f"Completed task {tid}")
        if status == "in_progress" and claimed_by:
            self.holds[claimed_by] = self.holds.get(claimed_by, 0) + 1
        return e


def _caps_for(skills: tuple[str, ...]) -> tuple[str, ...]:
    for caps in WORKER_CAPS:
        if set(skills) <= set(caps):
            return caps
    return WORKER_CAPS[0]


def build(n: int, seed: int = 0, workers_shape: str = "map") -> Gen:
    rng = random.Random(seed)
    g = Gen(n=n, rng=rng, str_ids=0.3)
    flat = workers_shape == "flat"
    k = max(1, n // 400)  # tasks per anomaly scenario
    g.say(_t(7200), "coordinator", f"Created {n} tasks")

    # The live workers that hold the healthy claims (several each, like a busy pool).
    n_live = 1 if flat else max(4, min(200, n // 250))
    live = [("worker-solo" if flat else f"worker-{i + 1}") for i in range(n_live)]
    g.live = live
    live_caps = {w: (tuple(sorted(set(SKILLS) - {"docs"})) if flat else WORKER_CAPS[i % 4])
                 for i, w in enumerate(live)}

    anomalies: list[tuple[str, int]] = [
        ("zombie_dead", 0 if flat else k), ("zombie_absent", k),
        ("stale", 0 if flat else k), ("lost_claim", 0 if flat else k),
        ("lost_claim_status", 0 if flat else max(1, k // 2)),
        ("capability_mismatch", k), ("missing_instructions", k), ("missing_context", k),
        ("unverified_null", k), ("unverified_error", k), ("repeated_failure", 3 * max(1, k // 2)),
        ("recycling", k), ("blocked", k), ("duplicate", max(1, k // 2)),
    ]
    n_anom = sum(c for _, c in anomalies)
    n_healthy = max(0, n - n_anom)

    # -- healthy bulk ----------------------------------------------------------------------
    for i in range(n_healthy):
        r = rng.random()
        if r < 0.35:
            g.task("pending", context=(rng.choice(CONTEXT_DOCS),) if rng.random() < .5 else ())
        elif r < 0.45:
            w = live[i % len(live)]
            caps = live_caps[w]
            g.task("in_progress", claimed_by=w, claim_age=rng.randint(30, 900),
                   skills=tuple(rng.sample(caps, 1)))
        elif r < 0.97:
            w = live[i % len(live)]
            g.task("completed", claimed_by=w, claim_age=rng.randint(900, 7000))
        else:  # a failure of its own: unique error text, no group
            g.task("failed", claimed_by=live[i % len(live)], claim_age=rng.randint(900, 7000),
                   error=f"RuntimeError: cannot render template {_word(i)}", result=None)

    def hb_fresh() -> float:
        return rng.uniform(3, 40)

    # -- anomalies -------------------------------------------------------------------------
    for name, count in anomalies:
        for j in range(count):
            if name == "zombie_dead":
                w = f"worker-dead-{j + 1}"
                age = rng.randint(130, 1800)
                g.worker(w, WORKER_CAPS[j % 4], age, claimed=_t(age + 30))
                g.task("in_progress", kinds=["zombie_claim"], claimed_by=w, claim_age=age + 30,
                       skills=(WORKER_CAPS[j % 4][0],),
                       scenario=f"claimed by {w}, whose last heartbeat is {age} s old (> 120 s)")
            elif name == "zombie_absent":
                w = f"worker-gone-{j + 1}"
                g.task("in_progress", kinds=["zombie_claim"], claimed_by=w,
                       claim_age=rng.randint(200, 3000), announce=False,
                       scenario=f"claimed by {w}, absent from worker-status.json")
            elif name == "stale":
                w = f"worker-slow-{j + 1}"
                age = rng.randint(70, 110)
                g.worker(w, WORKER_CAPS[j % 4], age, claimed=_t(age + 60))
                g.task("in_progress", kinds=["stale_heartbeat"], claimed_by=w,
                       claim_age=age + 60, skills=(WORKER_CAPS[j % 4][0],),
                       scenario=f"claimed by {w}, heartbeat {age} s old (60-120 s)")
            elif name == "lost_claim":
                a = live[j % len(live)]
                b = f"worker-racer-{j + 1}"
                caps = live_caps[a]
                e = g.task("in_progress", kinds=["lost_claim"], claimed_by=a, claim_age=240,
                           skills=(caps[0],),
                           scenario="")
                tid = str(e["id"])
                at_b = _t(240.5)
                g.say(at_b, b, f"Claimed task {tid}")
                g.worker(b, caps, hb_fresh(), claimed=at_b, completed=_t(2000))
                g.scenarios[tid] = (f"{b} announced its claim at {_s(at_b)} and holds nothing; "
                                    f"claimed_by says {a} (last writer won)")
                g.truth[f"agent:{b}"] = []
            elif name == "lost_claim_status":
                c = f"worker-lost-{j + 1}"
                g.worker(c, WORKER_CAPS[j % 4], hb_fresh(), claimed=_t(400), completed=_t(3000))
                g.truth[f"agent:{c}"] = ["lost_claim"]
                g.scenarios[f"agent:{c}"] = ("last_task_claimed 400 s ago is newer than "
                                            "last_task_completed, and no in-progress task "
                                            "names it")
            elif name == "capability_mismatch":
                w = live[j % len(live)]
                lacking = next(s for s in SKILLS if s not in live_caps[w])
                g.task("in_progress", kinds=["capability_mismatch"], claimed_by=w,
                       claim_age=rng.randint(30, 600), skills=(lacking,),
                       scenario=f"requires {lacking}; {w} has {', '.join(live_caps[w])}")
            elif name == "missing_instructions":
                g.task("pending", kinds=["missing_instructions"], write_file=False,
                       scenario="its instruction file was never written")
            elif name == "missing_context":
                g.task("pending", kinds=["missing_instructions"],
                       context=("docs/api-spec.md", f"docs/gone-{j}.md"),
                       scenario=f"context file docs/gone-{j}.md does not exist")
            elif name == "unverified_null":
                g.task("completed", kinds=["unverified_completion"],
                       claimed_by=live[j % len(live)], claim_age=rng.randint(900, 5000),
                       result=None, scenario="completed with result null")
            elif name == "unverified_error":
                g.task("completed", kinds=["unverified_completion"],
                       claimed_by=live[j % len(live)], claim_age=rng.randint(900, 5000),
                       result={"status": "error", "tests_passed": False},
                       error="pytest exited with 1",
                       scenario="completed, but the result says error")
            elif name == "repeated_failure":
                grp = j // 3
                tmpl = ERROR_POOL[grp % len(ERROR_POOL)] + f" [{_word(grp)}]"
                g.task("failed", kinds=["repeated_failure"], claimed_by=live[j % len(live)],
                       claim_age=rng.randint(900, 5000), result=None,
                       error=f"Traceback (most recent call last):\n  ...\n"
                             f"{tmpl.format(n=rng.randint(2, 99), m=rng.randint(100, 999))}",
                       scenario=f"failure group {grp}: one error signature, 3 tasks")
            elif name == "recycling":
                e = g.task("pending", kinds=["recycling_task"], retry_count=3,
                           scenario="reset to pending three times (retry_count 3)")
                tid = str(e["id"])
                for r_i in range(3):
                    g.say(_t(3000 - r_i * 600), "coordinator",
                          f"Reset task {tid} to pending (worker died)")
            elif name == "blocked":
                f = g.task("failed", claimed_by=live[j % len(live)], claim_age=4000,
                           error=f"RuntimeError: schema conflict on {_word(10_000 + j)}",
                           result=None)
                g.task("pending", kinds=["blocked_by_stuck"], depends_on=[str(f["id"])],
                       scenario=f"depends on {f['id']}, failed")
            elif name == "duplicate":
                e = g.task("pending", kinds=["corrupt_queue_file"],
                           scenario="its id appears twice in task-queue.json")
                g.raw_items.append(dict(e, description=e["description"] + " (again)"))

    # Invalid entries (no id, no status, not an object): the queue itself is corrupt.
    for j in range(max(1, k // 2)):
        g.raw_items.insert(rng.randrange(len(g.raw_items) + 1),
                           {"description": f"half-written task {j}", "status": "pending"})
    g.raw_items.insert(rng.randrange(len(g.raw_items) + 1),
                       {"id": g.next_ms + 7, "description": "no status"})
    g.raw_items.insert(rng.randrange(len(g.raw_items) + 1), "garbage")
    g.truth["queue"] = ["corrupt_queue_file"]
    g.scenarios["queue"] = "entries without id or status and a non-object in task-queue.json"

    # Healthy live workers: last completion after last claim unless they hold a claim.
    for w in live:
        holds = g.holds.get(w, 0) > 0
        g.worker(w, live_caps[w], rng.uniform(3, 40),
                 claimed=_t(rng.randint(30, 900)) if holds else _t(1500),
                 completed=_t(1200) if not holds else _t(2500))
        g.truth[f"agent:{w}"] = []
    for w in g.workers:
        g.truth.setdefault(f"agent:{w}", [])
    return g


def write(g: Gen, out: Path, workers_shape: str = "map") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / layout.TASKS_DIR).mkdir(exist_ok=True)
    (out / "docs").mkdir(exist_ok=True)
    for d in CONTEXT_DOCS:
        (out / d).write_text(f"# {d}\n")
    (out / layout.QUEUE).write_text(json.dumps(g.raw_items, indent=2) + "\n")
    if workers_shape == "flat":
        (name, info), = g.workers.items()
        (out / layout.WORKERS).write_text(json.dumps({"worker_id": name, **info}, indent=2))
    else:
        (out / layout.WORKERS).write_text(json.dumps(g.workers, indent=2))
    counts: dict[str, int] = {}
    for e in g.entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    (out / layout.PROGRESS).write_text(json.dumps({
        "current_step": counts.get("completed", 0), "total_steps": len(g.entries),
        "status": "in_progress", "last_updated": _s(_t(20)),
        "metadata": {"phase": "generated", "blockers": []}}, indent=2))
    lines = [json.dumps(obj) for _, obj in sorted(g.comms, key=lambda c: c[0])]
    (out / layout.COMMS).write_text("\n".join(lines) + "\n")
    for e in g.entries:
        tid = str(e["id"])
        if tid in g.missing_files:
            continue
        ctx = "".join(f"- {c}\n" for c in e["context_files"]) or "- (none)\n"
        (out / e["instruction_file"]).write_text(
            f"# Task: {e['description']}\n\n## Objective\n{e['description']}.\n\n"
            f"## Context\nRead these files first:\n{ctx}\n"
            "## Acceptance Criteria\n- Tests pass\n")


def generate(n: int, out: Path | str, seed: int = 0, workers_shape: str = "map"
             ) -> dict[str, Any]:
    """Write the state of ``n`` tasks under ``out`` and ``out/truth.json``; return the truth."""
    out = Path(out)
    g = build(n, seed, workers_shape)
    write(g, out, workers_shape)
    as_of = parse_local_iso(AS_OF.isoformat())
    truth = {"format": "coordination", "root": ".", "as_of": iso(as_of),
             "generated_at": iso(parse_local_iso(GENERATED_AT.isoformat())),
             "subjects": "a task by its id; the queue file as \"queue\"; a worker as "
                         "\"agent:NAME\"",
             "seed": seed, "workers_shape": workers_shape,
             "tasks": g.truth,
             # failed within the day and never reviewed: the generic informative kind
             "unscored_info": {str(e["id"]): ["unread_terminal"] for e in g.entries
                               if e["status"] == "failed"},
             "scenarios": g.scenarios}
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    os.utime(out / layout.QUEUE)
    return truth
