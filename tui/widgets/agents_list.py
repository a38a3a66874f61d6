"""Agents, one row each, problems first (dead, holding a zombie claim, locked out by repeated
failures, stale), then by name in natural order (agent-2 before agent-10); virtualized like
the lanes, so fifty agents or five hundred move the same."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text

from qwarden.core.model import Agent, Snapshot
from qwarden.core.textsafe import clean_line
from qwarden.core.timefmt import age_text
from qwarden.tui.widgets.row_list import RowList

LOCKED_OUT_FAILURES = 3  # consecutive failed runs after which an agent is kept from work
PROBLEMS = ("dead", "zombie", "locked out", "stale", "")
PROBLEM_STYLE = {"dead": "dead", "zombie": "critical", "locked out": "warning",
                 "stale": "at-risk", "": "muted"}


def natural_key(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    problem: str  # one of PROBLEMS ("" none)
    claims: tuple[str, ...]
    findings: int  # on the tasks it claims or says it works on


def agent_rows(snap: Snapshot, stale_after_s: float) -> list[AgentRow]:
    claims: dict[str, list[str]] = {}
    for tid, v in snap.verdicts.items():
        if v.claimed_by and tid in snap.tasks:
            claims.setdefault(v.claimed_by, []).append(tid)
    rows = []
    for name, a in snap.agents.items():
        held = sorted(claims.get(name, ()))
        tasks = set(held) | ({a.current_task_id} if a.current_task_id else set())
        fs = [f for t in tasks for f in snap.findings_for(t)]
        sig = a.newest_signal()
        if (a.pid is not None and a.pid_alive is False) or (a.running is False and held):
            problem = "dead"
        elif any(f.kind == "zombie_claim" for f in fs):
            problem = "zombie"
        elif a.consecutive_failures >= LOCKED_OUT_FAILURES:
            problem = "locked out"
        elif a.running and (sig is None or
                            (snap.as_of - sig.at).total_seconds() > stale_after_s):
            problem = "stale"
        else:
            problem = ""
        rows.append(AgentRow(a, problem, tuple(held), len(fs)))
    rows.sort(key=lambda r: (PROBLEMS.index(r.problem), natural_key(r.agent.name)))
    return rows


class AgentsList(RowList):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.by_name: dict[str, AgentRow] = {}
        self.empty_text = "no agents"

    def load(self, snap: Snapshot, stale_after_s: float) -> None:
        self.snapshot = snap
        rows = agent_rows(snap, stale_after_s)
        self.by_name = {r.agent.name: r for r in rows}
        self.set_rows([r.agent.name for r in rows])

    def render_row(self, key: str, width: int) -> Text:
        r = self.by_name[key]
        a, snap = r.agent, self.snapshot
        assert snap is not None
        t = Text()
        t.append(f"{r.problem or 'ok':<10} ", self.row_style(PROBLEM_STYLE[r.problem]))
        t.append(f"{clean_line(a.name, 40):<16} ")
        running = {True: "running", False: "stopped", None: "?"}[a.running]
        t.append(f"{running:<8} ", self.row_style("muted"))
        sig = a.newest_signal()
        age = age_text((snap.as_of - sig.at).total_seconds()) if sig else "never"
        t.append(f"{age:>6} ", self.row_style("muted"))
        t.append(f"{clean_line(a.current_task_id or '—', 12):<12} ")
        t.append(f"claims {len(r.claims):<2} ")
        t.append(f"findings {r.findings:<3} ",
                 self.row_style("warning") if r.findings else self.row_style("muted"))
        t.append(clean_line(a.status_text, 80), self.row_style("muted"))
        return t

    def task_of(self, name: str) -> str | None:
        """Where enter goes: the task the agent says it works on, else its first claim."""
        r = self.by_name.get(name)
        snap = self.snapshot
        if r is None or snap is None:
            return None
        tid = r.agent.current_task_id
        if tid and tid in snap.tasks:
            return tid
        return r.claims[0] if r.claims else None
