"""``qwarden demo --generate N``: a static Octopoid v1 state with a known anomaly mix.

Writes ``OUT/.orchestrator/`` (task files, a WAL-mode state.db, agents/) and ``OUT/truth.json``
in the shared sample's format: ``as_of``, ``generated_at``, ``mtimes``, ``tasks`` (id -> the
scored finding kinds it must get), ``scenarios``, ``seed``, ``plan``. Deterministic per seed.
Each scenario mirrors what Octopoid's own steps leave behind (see octopoid-v1.md), and is built
so that it trips exactly the kinds it names and no other scored kind.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from qwarden.core.formats.octopoid.writer import (
    TASK_COLUMNS,
    continuation_block,
    error_block,
    init_root,
    insert_rejection_notice,
    local_iso,
    register_agent_config,
    resume_block,
    sqlite_utc,
    task_text,
    trail_block,
    upsert_agent_row,
    write_agent_state,
    write_current_task,
    write_heartbeat,
    write_status,
)

GENERATED_AT = datetime(2026, 11, 22, 22, 0, 0)  # naive local, like Octopoid's stamps
AS_OF = GENERATED_AT + timedelta(minutes=10)
RECENT_DONE = 0.1  # the share of done tasks that finished within the day
MAX_AGENT_DIRS = 50  # impl-agent-1..49 for live scenarios, plus the historical worker
HISTORY_AGENT = "impl-agent-0"  # claimed the finished, failed and bounced tasks

TITLES = ("Add export button", "Refactor parser", "Fix flaky test", "Migrate schema",
          "Render thumbnails", "Optimise query", "Wire up settings page", "Port module to async",
          "Document the API", "Harden login flow", "Cache avatars", "Split billing service")


@dataclass
class Planned:
    tid: str
    scenario: str
    kinds: list[str]
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (queue dir, bytes)
    row: dict[str, Any] | None = None
    history: list[tuple[str, str | None, str | None, datetime]] = field(default_factory=list)
    notes: str | None = None  # shared/notes/TASK-<id>.md, for tasks an agent ran out of turns on


class _Gen:
    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rnd = random.Random(seed)
        self.age_rnd = random.Random(seed + 0x5EED)  # when the finished tasks finished
        self.used: set[str] = set()
        self.tasks: list[Planned] = []
        self.agents: list[dict[str, Any]] = []
        self.agent_no = 0

    # ---- helpers ------------------------------------------------------------------
    def new_id(self) -> str:
        while True:
            tid = f"{self.rnd.getrandbits(32):08x}"
            if tid not in self.used:
                self.used.add(tid)
                return tid

    def ago(self, seconds: float) -> datetime:
        """A moment ``seconds`` before as_of (naive local)."""
        return AS_OF - timedelta(seconds=seconds)

    def word(self) -> str:
        """A word no signature mask touches (no digits, not hex), so errors stay distinct."""
        return "".join(self.rnd.choice("ghijklmnopqrstuvwxyz") for _ in range(7))

    def title(self) -> str:
        return self.rnd.choice(TITLES)

    def new_agent(self, **spec: Any) -> str:
        self.agent_no += 1
        name = f"impl-agent-{self.agent_no}"
        spec["name"] = name
        self.agents.append(spec)
        return name

    def base(self, tid: str, title: str, created: datetime, blocked_by: str = "",
             checks: str = "") -> str:
        return task_text(tid, title, created, priority=self.rnd.choice(("P1", "P2", "P2", "P3")),
                         blocked_by=(blocked_by,) if blocked_by else (),
                         checks=(checks,) if checks else (),
                         context=f"Context for {title}.\n\nDetails: {self.rnd.random():.6f}")

    def row(self, tid: str, queue: str, dirname: str, created: datetime, updated: datetime,
            **cols: Any) -> dict[str, Any]:
        r: dict[str, Any] = {
            "id": tid,
            "file_path": f"/home/operator/boxen/.orchestrator/shared/queue/{dirname}/"
                         f"TASK-{tid}.md",
            "queue": queue, "priority": "P2", "role": "implement", "branch": "main",
            "commits_count": 0, "attempt_count": 0, "rejection_count": 0, "has_plan": 0,
            "created_at": sqlite_utc(created), "updated_at": local_iso(updated)}
        r.update(cols)
        return r

    def add(self, p: Planned) -> Planned:
        self.tasks.append(p)
        return p

    # ---- scenarios (each names exactly the scored kinds it must get) ---------------
    def happy_done(self) -> Planned:
        tid, t = self.new_id(), self.title()
        # A real queue's done lane is mostly old: RECENT_DONE of it finished within the day
        # (unread_terminal, informative), the rest over the last month. Its own generator, so
        # every other draw (ids, scenarios) is the same as without the spread.
        fin = (self.age_rnd.randint(3000, 80000) if self.age_rnd.random() < RECENT_DONE
               else self.age_rnd.randint(86400 + 3600, 30 * 86400))
        c, cl, sub, acc = self.ago(fin + 4200), self.ago(fin + 3000), self.ago(fin + 1000), \
            self.ago(fin)
        commits = self.rnd.randint(1, 6)
        text = (self.base(tid, t, c)
                + trail_block(("CLAIMED_BY", "impl-agent-0"), ("CLAIMED_AT", cl))
                + trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", commits),
                              ("TURNS_USED", self.rnd.randint(5, 90)))
                + trail_block(("ACCEPTED_AT", acc), ("ACCEPTED_BY", "scheduler")))
        return self.add(Planned(tid, "happy path: done with commits", [],
                                [("done", text.encode())],
                                self.row(tid, "done", "done", c, acc, claimed_at=local_iso(cl),
                                         commits_count=commits, submitted_at=local_iso(sub),
                                         completed_at=local_iso(acc)),
                                [("created", None, None, c), ("claimed", "impl-agent-0", None, cl),
                                 ("submitted", None, f"commits={commits}", sub),
                                 ("accepted", "scheduler", None, acc)]))

    def backlog(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c = self.ago(self.rnd.randint(900, 86400))
        return self.add(Planned(tid, "incoming backlog", [],
                                [("incoming", self.base(tid, t, c).encode())],
                                self.row(tid, "incoming", "incoming", c, c),
                                [("created", None, None, c)]))

    def provisional_ok(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, sub = self.ago(7200), self.ago(6000), self.ago(3000)
        checks = json.dumps({"gk-testing": {"status": "pass", "summary": "all 57 tests pass",
                                            "timestamp": local_iso(sub)}})
        text = (self.base(tid, t, c, checks="gk-testing")
                + trail_block(("CLAIMED_BY", "impl-agent-0"), ("CLAIMED_AT", cl))
                + trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", 3), ("TURNS_USED", 44)))
        return self.add(Planned(tid, "provisional with commits and passing checks", [],
                                [("provisional", text.encode())],
                                self.row(tid, "provisional", "provisional", c, sub,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl),
                                         commits_count=3, submitted_at=local_iso(sub),
                                         checks="gk-testing", check_results=checks)))

    def normal_claim(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl = self.ago(3600), self.ago(self.rnd.randint(120, 1800))
        agent = self.new_agent(running=True, last_started=cl, heartbeat=self.ago(15),
                               status=(tid, self.ago(20), 40), current_task=(tid, cl))
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
        return self.add(Planned(tid, "normal DB-mode claim: file stays in incoming/, agent alive",
                                [], [("incoming", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=agent,
                                         claimed_at=local_iso(cl)),
                                [("created", None, None, c), ("claimed", agent, None, cl)]))

    def mismatch_continuation(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, nc = self.ago(7200), self.ago(5000), self.ago(4000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + trail_block(("NEEDS_CONTINUATION_AT", nc),
                              ("CONTINUATION_REASON", "max_turns_reached"),
                              ("WIP_BRANCH", f"agent/{tid}"), ("LAST_AGENT", "impl-agent-0")))
        return self.add(Planned(tid, "needs_continuation: file moved, DB still claimed",
                                ["file_db_mismatch"], [("needs_continuation", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl))))

    def mismatch_db_newer(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, sub, acc = self.ago(7200), self.ago(6000), self.ago(5000), self.ago(2000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", 2), ("TURNS_USED", 30)))
        return self.add(Planned(tid, "accepted in the DB only: file left in provisional/",
                                ["file_db_mismatch"], [("provisional", text.encode())],
                                self.row(tid, "done", "provisional", c, acc,
                                         claimed_at=local_iso(cl), commits_count=2,
                                         submitted_at=local_iso(sub),
                                         completed_at=local_iso(acc))))

    def retried_with_stale_error(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, fa, rt = self.ago(7200), self.ago(5000), self.ago(4000), self.ago(3000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + error_block(fa, f"Claude invocation failed with exit code 1\n"
                                  f"Traceback: boom {tid}")
                + trail_block(("RETRIED_AT", rt)))
        return self.add(Planned(tid, "fail then retry: DB stays failed, file back in incoming "
                                     "with old error", ["file_db_mismatch", "stale_error"],
                                [("incoming", text.encode())],
                                self.row(tid, "failed", "incoming", c, fa,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl))))

    def orphan(self) -> Planned:
        tid = self.new_id()
        text = self.base(tid, "Hand-written task", self.ago(86400))
        return self.add(Planned(tid, "orphan: file with no DB row", ["orphan_file"],
                                [("incoming", text.encode())]))

    def corrupt(self) -> Planned:
        tid = self.new_id()
        junk = b"\x00\x01garbage\xff\xfe not a task \x1b[31m\n" * self.rnd.randint(1, 4)
        return self.add(Planned(tid, "corrupt: unparseable bytes, no DB row", ["corrupt_task"],
                                [(self.rnd.choice(("incoming", "done")), junk)]))

    def missing(self) -> Planned:
        tid = self.new_id()
        c = self.ago(3600)
        return self.add(Planned(tid, "missing file: DB row, no file anywhere", ["missing_file"],
                                [], self.row(tid, "incoming", "incoming", c, c)))

    def duplicate_stub(self) -> Planned:
        p = self.happy_done()
        p.scenario = "duplicate: real file in done/, stub in provisional/"
        p.kinds = ["duplicate_file"]
        p.files.append(("provisional", trail_block(("ACCEPTED_AT", self.ago(2500)),
                                                   ("ACCEPTED_BY", "recycler")).encode()))
        return p

    def zombie(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl = self.ago(4 * 3600), self.ago(3 * 3600)
        ghost = f"ghost-agent-{self.rnd.randint(1, 9)}"  # no state at all: the process is gone
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", ghost), ("CLAIMED_AT", cl))
        return self.add(Planned(tid, "zombie: claimed 3h, the claiming agent left no state",
                                ["zombie_claim"], [("incoming", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=ghost,
                                         claimed_at=local_iso(cl))))

    def zombie_stamped(self) -> Planned | None:
        if self.agent_no >= MAX_AGENT_DIRS - 1:
            return None
        tid, t = self.new_id(), self.title()
        c, cl = self.ago(4 * 3600), self.ago(3 * 3600)
        agent = self.new_agent(running=True, pid=999999, last_started=cl,
                               last_finished=self.ago(2 * 3600))
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
        return self.add(Planned(tid, "zombie: claimed 3h, agent process gone for 2h "
                                     "(crash stamped last_finished)", ["zombie_claim"],
                                [("incoming", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=agent,
                                         claimed_at=local_iso(cl))))

    def stale_heartbeat(self) -> Planned | None:
        if self.agent_no >= MAX_AGENT_DIRS - 1:
            return None
        tid, t = self.new_id(), self.title()
        c, cl = self.ago(7200), self.ago(2700)
        hb = self.ago(840)
        agent = self.new_agent(running=True, last_started=cl, heartbeat=hb,
                               status=(tid, hb, 12), current_task=(tid, cl))
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
        return self.add(Planned(tid, "at risk: agent says running but evidence is 14 min old",
                                ["stale_heartbeat"], [("incoming", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=agent,
                                         claimed_at=local_iso(cl))))

    def split_brain(self) -> Planned | None:
        if self.agent_no >= MAX_AGENT_DIRS - 1:
            return None
        tid, t = self.new_id(), self.title()
        c, cl, reset = self.ago(7200), self.ago(3600), self.ago(900)
        agent = self.new_agent(running=True, last_started=cl, heartbeat=self.ago(20),
                               status=(tid, self.ago(33), 85), current_task=(tid, cl))
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
        return self.add(Planned(tid, "split brain: DB reset to incoming, agent still working "
                                     "with fresh heartbeat", ["split_brain"],
                                [("incoming", text.encode())],
                                self.row(tid, "incoming", "incoming", c, reset),
                                [("created", None, None, c), ("claimed", agent, None, cl),
                                 ("reset", None, "claimed timeout exceeded", reset)]))

    def recycling(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c = self.ago(86400)
        return self.add(Planned(tid, "recycling: retried and rejected 3 times (DB counts)",
                                ["recycling_task"], [("incoming", self.base(tid, t, c).encode())],
                                self.row(tid, "incoming", "incoming", c, self.ago(3600),
                                         attempt_count=2, rejection_count=1)))

    def failed_group(self, size: int) -> list[Planned]:
        column = self.rnd.choice(("manual_die", "owner_id", "tenant", "locale"))
        out = []
        for i in range(size):
            tid, t = self.new_id(), f"Feature {i} touching sessions"
            c, cl, fa = self.ago(7200), self.ago(5000), self.ago(4000)
            err = (f"Traceback (most recent call last):\n  File \"app.py\", line {40 + i}\n"
                   f"sqlite3.OperationalError: no such column: sessions.{column}")
            text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                       ("CLAIMED_AT", cl)) + error_block(fa, err))
            out.append(self.add(Planned(
                tid, "repeated failure: same error signature across tasks",
                ["repeated_failure"], [("failed", text.encode())],
                self.row(tid, "failed", "incoming", c, fa, claimed_by="impl-agent-0",
                         claimed_at=local_iso(cl)))))
        return out

    def lone_failure(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, fa = self.ago(7200), self.ago(5000), self.ago(4000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + error_block(fa, f"AssertionError: {self.word()} {self.word()} went wrong"))
        return self.add(Planned(tid, "failed once with its own error", [],
                                [("failed", text.encode())],
                                self.row(tid, "failed", "incoming", c, fa,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl))))

    def unverified(self) -> Planned:
        tid, t = self.new_id(), "Claims to be done"
        c, cl, sub = self.ago(7200), self.ago(6000), self.ago(3000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", 0), ("TURNS_USED", 12)))
        return self.add(Planned(tid, "unverified completion: submitted with 0 commits",
                                ["unverified_completion"], [("provisional", text.encode())],
                                self.row(tid, "provisional", "provisional", c, sub,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl),
                                         submitted_at=local_iso(sub))))

    def blocked(self, blocker: str) -> Planned:
        tid = self.new_id()
        c = self.ago(3600)
        text = self.base(tid, "Follow-up blocked on a stuck task", c, blocked_by=blocker)
        return self.add(Planned(tid, "blocked by a zombie/failed task", ["blocked_by_stuck"],
                                [("incoming", text.encode())],
                                self.row(tid, "incoming", "incoming", c, c, blocked_by=blocker)))

    def escalated(self, stale_path: bool) -> Planned:
        tid, t = self.new_id(), "Parked by a human"
        c, esc = self.ago(7200), self.ago(3000)
        text = self.base(tid, t, c) + trail_block(("ESCALATED_AT", esc),
                                                  ("PLAN_ID", f"plan-{tid}"))
        return self.add(Planned(tid, "stale file_path (unscored): file in escalated/, file_path "
                                     "says provisional/" if stale_path else
                                "held: escalated by a human (unscored kinds only)", [],
                                [("escalated", text.encode())],
                                self.row(tid, "escalated",
                                         "provisional" if stale_path else "escalated", c, esc,
                                         plan_id=f"plan-{tid}", has_plan=1)))

    def recycling_continuations(self) -> Planned:
        """Like the sample's b5276b81: ran out of turns again and again; needs_continuation and
        resume write no DB row, so the DB still says claimed while the file sits in
        needs_continuation/."""
        tid, t = self.new_id(), "Implement the whole editor"
        bounces = self.rnd.randint(3, 5)
        c, cl = self.ago(6 * 3600), self.ago(5 * 3600)
        agent = "impl-agent-0"
        text = self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
        notes = f"# Agent Notes: TASK-{tid}\n\n"
        for i in range(bounces):
            nc = cl + timedelta(minutes=40 * i + 30)
            text += continuation_block(nc, agent, tid)
            notes += (f"## Attempt {i + 1} \u2014 {agent} ({local_iso(nc)})\n"
                      f"Turns: 200 | Commits: {self.rnd.randint(0, 2)}\n\n"
                      "...tail of agent output...\n\n")
            if i < bounces - 1:
                text += resume_block(nc + timedelta(minutes=5), agent)
        return self.add(Planned(tid, f"recycling: bounced to needs_continuation {bounces} times "
                                     "(and DB still claimed)",
                                ["file_db_mismatch", "recycling_task"],
                                [("needs_continuation", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=agent,
                                         claimed_at=local_iso(cl)),
                                [("created", None, None, c), ("claimed", agent, None, cl)],
                                notes=notes))

    def review_escalated(self) -> Planned:
        """Three review rejections: Octopoid escalates at the third; only the newest notice stays
        in the file, the DB keeps the count."""
        tid, t = self.new_id(), "Rework the importer"
        c = self.ago(8 * 3600)
        text = self.base(tid, t, c)
        history: list[tuple[str, str | None, str | None, datetime]] = [("created", None, None, c)]
        for i in range(1, 4):
            cl, sub, rej = (c + timedelta(hours=2 * i - 1), c + timedelta(hours=2 * i - 0.5),
                            c + timedelta(hours=2 * i))
            text += trail_block(("CLAIMED_BY", "impl-agent-0"), ("CLAIMED_AT", cl))
            text += trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", 1), ("TURNS_USED", 50))
            text = insert_rejection_notice(text, i, f"Round {i}: the {self.word()} case fails.",
                                           rej, "gatekeeper")
            history += [("claimed", "impl-agent-0", None, cl),
                        ("submitted", None, "commits=1, turns=50", sub),
                        ("escalated" if i == 3 else "rejected", "gatekeeper", None, rej)]
        return self.add(Planned(tid, "recycling: review-rejected 3 times, escalated at the max",
                                ["recycling_task"], [("escalated", text.encode())],
                                self.row(tid, "escalated", "escalated", c, rej,
                                         commits_count=1, rejection_count=3,
                                         submitted_at=local_iso(sub),
                                         claimed_at=None), history))

    def review_rejected_once(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, sub, rej = self.ago(7200), self.ago(6000), self.ago(5000), self.ago(4000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + trail_block(("SUBMITTED_AT", sub), ("COMMITS_COUNT", 2), ("TURNS_USED", 31)))
        text = insert_rejection_notice(text, 1, "Please add tests.", rej, "gatekeeper")
        return self.add(Planned(tid, "review-rejected once: back in incoming with the notice",
                                [], [("incoming", text.encode())],
                                self.row(tid, "incoming", "incoming", c, rej, commits_count=2,
                                         rejection_count=1, submitted_at=local_iso(sub))))

    def agent_rejected(self) -> Planned:
        tid, t = self.new_id(), self.title()
        c, cl, rj = self.ago(7200), self.ago(5000), self.ago(4000)
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", "impl-agent-0"),
                                                   ("CLAIMED_AT", cl))
                + trail_block(("REJECTED_AT", rj), ("REJECTION_REASON", "already_implemented"),
                              ("REJECTED_BY", "impl-agent-0"))
                + "\n## Rejection Details\nThe feature is already on main.\n")
        return self.add(Planned(tid, "agent reject: file moved to rejected/, DB still claimed",
                                ["file_db_mismatch"], [("rejected", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl,
                                         claimed_by="impl-agent-0", claimed_at=local_iso(cl))))

    def resumed_claim(self) -> Planned | None:
        """Resumed after running out of turns: the file is in claimed/, the DB still claimed
        (both normal) and the agent is working."""
        if self.agent_no >= MAX_AGENT_DIRS - 1:
            return None
        tid, t = self.new_id(), self.title()
        c, cl, nc, rs = self.ago(7200), self.ago(5400), self.ago(3000), self.ago(1200)
        agent = self.new_agent(running=True, last_started=rs, heartbeat=self.ago(25),
                               status=(tid, self.ago(30), 60), current_task=(tid, rs))
        text = (self.base(tid, t, c) + trail_block(("CLAIMED_BY", agent), ("CLAIMED_AT", cl))
                + continuation_block(nc, agent, tid) + resume_block(rs, agent))
        return self.add(Planned(tid, "resumed: file in claimed/, DB claimed, agent alive", [],
                                [("claimed", text.encode())],
                                self.row(tid, "claimed", "incoming", c, cl, claimed_by=agent,
                                         claimed_at=local_iso(cl))))


def plan(n: int, seed: int) -> _Gen:
    """Choose the scenarios: about 0.5% of tasks per anomaly kind (at least one each), the
    rest happy, backlog, provisional and live claims."""
    g = _Gen(n, seed)
    per = max(1, n // 200)
    anomalies: list[Any] = [
        g.mismatch_continuation, g.mismatch_db_newer, g.retried_with_stale_error, g.orphan,
        g.corrupt, g.missing, g.duplicate_stub, g.zombie, g.recycling, g.unverified,
        g.lone_failure]
    for fn in anomalies:
        for _ in range(per):
            fn()
    for fn in (g.zombie_stamped, g.stale_heartbeat, g.split_brain):
        for _ in range(min(per, 6)):
            fn()
    for _ in range(max(1, per // 3)):
        g.failed_group(g.rnd.randint(3, 5))
    stuck = [p.tid for p in g.tasks if p.kinds == ["zombie_claim"]] + \
            [p.tid for p in g.tasks if p.scenario.startswith("failed once")]
    for i in range(per):
        g.blocked(stuck[i % len(stuck)])
    for i in range(max(1, per // 2)):
        g.escalated(stale_path=i % 2 == 0)
    for _ in range(min(max(1, per), MAX_AGENT_DIRS - 1 - g.agent_no - 1)):
        g.normal_claim()
    # Added after the original mix so earlier scenarios keep their ids for a given seed.
    extra: list[Any] = [g.recycling_continuations, g.review_escalated, g.agent_rejected]
    for fn in extra:
        for _ in range(max(1, per // 2)):
            if len(g.tasks) < n:  # small n: the original mix first
                fn()
    for fn in (g.review_rejected_once, g.resumed_claim):
        if len(g.tasks) < n:
            fn()
    fillers = (g.happy_done, g.happy_done, g.happy_done, g.backlog, g.provisional_ok)
    while len(g.tasks) < n:
        g.rnd.choice(fillers)()
    return g


def _truncate(g: _Gen, n: int) -> list[Planned]:
    """Below ~40 tasks the anomaly plan does not fit: keep the first n, drop agents whose task
    was cut, and a failure group cut below the threshold no longer expects repeated_failure."""
    kept = g.tasks[:n]
    ids = {p.tid for p in kept}
    claimers = {p.row.get("claimed_by") for p in kept if p.row}
    g.agents = [a for a in g.agents if a["name"] in claimers
                or (a.get("status") or a.get("current_task") or ("",))[0] in ids]
    groups: dict[str, list[Planned]] = {}
    for p in kept:
        if p.kinds == ["repeated_failure"]:
            groups.setdefault(p.files[0][1].decode().rsplit("\n", 2)[-2], []).append(p)
    for members in groups.values():
        if len(members) < 3:
            for p in members:
                p.kinds, p.scenario = [], "failed (its group was cut by a small --generate N)"
    return kept


def _default_history(p: Planned) -> list[tuple[str, str | None, str | None, datetime]]:
    """task_history rows Octopoid's steps would have left for a row built without them."""
    r = p.row or {}
    created = datetime.fromisoformat(r["created_at"].replace(" ", "T") + "+00:00")
    hist: list[tuple[str, str | None, str | None, datetime]] = [
        ("created", None, f"priority={r['priority']}, role=implement, project=None",
         created.astimezone().replace(tzinfo=None))]
    if r.get("claimed_at"):
        hist.append(("claimed", r.get("claimed_by") or "impl-agent-0", None,
                     datetime.fromisoformat(r["claimed_at"])))
    if r.get("submitted_at"):
        hist.append(("submitted", None, f"commits={r['commits_count']}, turns=None",
                     datetime.fromisoformat(r["submitted_at"])))
    if r.get("completed_at"):
        hist.append(("accepted", "scheduler", None, datetime.fromisoformat(r["completed_at"])))
    if r["queue"] == "failed":
        hist.append(("failed", None, None, datetime.fromisoformat(r["updated_at"])))
    return hist


def _write_agent(root: Path, a: dict[str, Any], gen_ts: float) -> None:
    """An agent's files as Octopoid's scheduler and hooks leave them (as the sample's)."""
    name = a["name"]
    register_agent_config(root, name)
    write_agent_state(root, name, running=a["running"], pid=a.get("pid"),
                      last_started=a["last_started"], last_finished=a.get("last_finished"),
                      total_runs=3, total_successes=2, at=GENERATED_AT)
    if a.get("heartbeat") is not None:
        write_heartbeat(root, name, a["heartbeat"])
    if a.get("status") is not None:
        tid, at, progress = a["status"]
        write_status(root, name, tid, progress, at)
    if a.get("current_task") is not None:
        tid, started = a["current_task"]
        write_current_task(root, name, tid, started_at=started)
        os.utime(root / "agents" / name / "current_task.json", (gen_ts, gen_ts))
    upsert_agent_row(root, name, running=a["running"], pid=a.get("pid"),
                     current_task_id=a["current_task"][0] if a.get("current_task") else None)


def generate(out: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """Write the state and truth.json; returns the truth."""
    g = plan(n, seed)
    g.tasks = _truncate(g, n)
    root = init_root(out)
    gen_ts = GENERATED_AT.timestamp()
    q = root / "shared" / "queue"
    notes = root / "shared" / "notes"
    mtimes: dict[str, float] = {}
    # Bulk files are written directly (no temp + rename): nothing reads the state while it is
    # being generated, and 100k renames would double the time.
    for p in g.tasks:
        for queue, data in p.files:
            path = q / queue / f"TASK-{p.tid}.md"
            path.write_bytes(data)
            os.utime(path, (gen_ts, gen_ts))
        if p.notes is not None:
            path = notes / f"TASK-{p.tid}.md"
            path.write_text(p.notes)
            os.utime(path, (gen_ts, gen_ts))
    conn = sqlite3.connect(root / "state.db")
    with conn:
        conn.executemany(
            f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(TASK_COLUMNS))})",
            [tuple(p.row.get(c) for c in TASK_COLUMNS) for p in g.tasks if p.row])
        conn.executemany(
            "INSERT INTO task_history (task_id, event, agent, details, timestamp) "
            "VALUES (?, ?, ?, ?, ?)",
            [(p.tid, ev, agent, details, sqlite_utc(at)) for p in g.tasks if p.row
             for ev, agent, details, at in (p.history or _default_history(p))])
    conn.close()
    for a in g.agents:
        _write_agent(root, a, gen_ts)
        for fname in ("heartbeat", "status.json"):
            f = root / "agents" / a["name"] / fname
            if f.exists():
                mtimes[f"agents/{a['name']}/{fname}"] = f.stat().st_mtime
            # state.json and current_task.json keep generated_at
    # the fleet's past worker: idle now, its claims all ended (accepted, failed, bounced...)
    _write_agent(root, {"name": HISTORY_AGENT, "running": False,
                        "last_started": AS_OF - timedelta(hours=1),
                        "last_finished": AS_OF - timedelta(minutes=55)}, gen_ts)
    os.utime(root / "agents.yaml", (gen_ts, gen_ts))
    conn = sqlite3.connect(root / "state.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        # an idle Octopoid DB: everything checkpointed
        Path(str(root / "state.db") + suffix).unlink(missing_ok=True)
    os.utime(root / "state.db", (gen_ts, gen_ts))
    truth = {
        "as_of": local_iso(AS_OF), "generated_at": local_iso(GENERATED_AT),
        "mtimes": dict(sorted(mtimes.items())), "plan": f"generated-{n}",
        "scenarios": {p.tid: p.scenario for p in g.tasks},
        "seed": seed, "tasks": {p.tid: p.kinds for p in g.tasks},
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
    return truth
