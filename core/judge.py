"""Judging: tasks + agents + a clock -> verdicts and findings, fully or just for what changed.

Phase one gives every task its verdict (effective state, liveness); phase two runs the registered
rules, which may look at other tasks' verdicts (a blocker's zombie claim). ``Judge`` keeps the last
results and reverse indexes so an incremental update re-judges only the changed tasks and the
tasks that depend on them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime

import msgspec.structs

from qwarden.core.config import Config
from qwarden.core.liveness import JudgeContext, make_verdict, mismatch_settled, verdict
from qwarden.core.model import (
    Action,
    Agent,
    Fact,
    Finding,
    Liveness,
    Severity,
    Task,
    Verdict,
)
from qwarden.core.rules.base import Judged, RuleContext, TaskRule
from qwarden.core.rules.deps import blocked_by
from qwarden.core.rules.registry import (
    RULE_ORDER,
    group_rules,
    regular,
    rules_for,
    subject_rules,
)
from qwarden.core.semantics import Semantics

# Actions that would take work away from an agent that is demonstrably working.
DISRUPTIVE = frozenset({Action.RETRY, Action.RELEASE_CLAIM, Action.CANCEL, Action.QUARANTINE,
                        Action.SYNC_DB, Action.SYNC_FILE})


def agents_naming(agents: Mapping[str, Agent]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for a in agents.values():
        if a.current_task_id:
            out.setdefault(a.current_task_id, []).append(a.name)
    return {k: tuple(v) for k, v in out.items()}


def choose_action(v: Verdict, findings: tuple[Finding, ...], sem: Semantics) -> Action:
    """One recommended action per task: the most severe finding's, earlier rules first on ties;
    never a disruptive one for work that is demonstrably live."""
    if len(findings) == 1:
        action = findings[0].recommended_action
    elif findings:
        best = min(findings, key=lambda f: (-f.severity.rank, RULE_ORDER.get(f.kind, 99)))
        action = best.recommended_action
    elif v.liveness is Liveness.LIVE:
        action = Action.CONTINUE_SUPERVISION
    elif v.effective_state in sem.review_states:
        action = Action.ACCEPT
    elif v.effective_state in sem.failed_states:
        action = Action.RETRY
    else:
        action = Action.NONE
    if (v.split_brain_live or v.liveness is Liveness.LIVE) and action in DISRUPTIVE:
        action = Action.CONTINUE_SUPERVISION
    return action


def _renamed(fs: tuple[Finding, ...], names: Mapping[str, str]) -> tuple[Finding, ...]:
    """The findings under the format's own kind names (``Semantics.kind_names``)."""
    return tuple(msgspec.structs.replace(f, kind=names[f.kind]) if f.kind in names else f
                 for f in fs)


def _task_order_key(f: Finding) -> tuple[int, str]:
    return (-f.severity.rank, f.kind)


def _order_key(f: Finding) -> tuple[int, str, str, int]:
    return (-f.severity.rank, f.kind, f.task_id, id(f))


class FindingOrder:
    """All findings kept sorted (most severe, then kind, then task) under small changes: one
    file move at 100,000 tasks must not re-sort tens of thousands of findings. Bisection
    computes keys on the fly rather than keeping a parallel list of key tuples."""

    def __init__(self) -> None:
        self._items: list[Finding] = []
        self._frozen: tuple[Finding, ...] | None = ()

    def rebuild(self, findings: list[Finding]) -> None:
        self._items = sorted(findings, key=_order_key)
        self._frozen = None

    def replace(self, old: tuple[Finding, ...], new: tuple[Finding, ...]) -> None:
        if not old and not new:
            return
        self._frozen = None
        items = self._items
        for f in old:
            i = bisect.bisect_left(items, _order_key(f), key=_order_key)
            if i < len(items) and items[i] is f:
                del items[i]
        for f in new:
            bisect.insort_left(items, f, key=_order_key)

    def snapshot(self) -> tuple[Finding, ...]:
        if self._frozen is None:
            self._frozen = tuple(self._items)
        return self._frozen


class Judge:
    """Holds the last judgement so changes can be re-judged incrementally."""

    def __init__(self, config: Config, semantics: Semantics, incremental: bool = True) -> None:
        """``incremental=False``: full runs only (a one-shot report), so the indexes that
        re-judging needs later (who names a blocker, whose verdict time alone can change)
        are not built."""
        self.config = config
        self.semantics = semantics
        self.incremental = incremental
        self.thresholds = semantics.own_thresholds(config.thresholds)
        # the format's subject rules' findings (about the queue, an agent, or a task they
        # judge whole-snapshot), and the same by subject
        self.subject_findings: tuple[Finding, ...] = ()
        self._subject_by_id: dict[str, tuple[Finding, ...]] = {}
        self.facts: tuple[Fact, ...] = ()
        self.judged: dict[str, Judged] = {}
        self.task_findings: dict[str, tuple[Finding, ...]] = {}
        self.group_findings: tuple[Finding, ...] = ()
        self.verdicts: dict[str, Verdict] = {}
        self._blocked_on: dict[str, set[str]] = {}  # blocker id -> tasks naming it
        self._blocks: dict[str, tuple[str, ...]] = {}
        self.time_sensitive: set[str] = set()
        self.has_db = True
        self.reviews: Mapping[str, datetime] = {}
        self._failed: set[str] = set()  # effectively failed task ids (group rules' input)
        self._order = FindingOrder()
        # agent -> tasks whose verdict names it as claimant (an agent's change re-judges these)
        self.claims_by_agent: dict[str, set[str]] = {}
        self._group_by_task: dict[str, list[Finding]] = {}
        # Summaries kept as verdicts and findings change, so a snapshot carries them ready
        # (a view must not walk 100,000 verdicts or findings per update to get them).
        self.by_task: dict[str, tuple[Finding, ...]] = {}  # task -> its findings, worst first
        self.state_counts: dict[str, int] = {}  # effective state -> tasks
        self.severity_counts: dict[Severity, int] = dict.fromkeys(Severity, 0)
        # severity -> ids of tasks with a finding of it (a dict used as an ordered set, so the
        # engine publishes it like the other per-task maps: only what changed is copied)
        self.tasks_by_severity: dict[Severity, dict[str, None]] = {s: {} for s in Severity}
        self._group_dirty = False  # a failed task vanished: group rules must rerun
        # (effective state, has a claim problem, regular) -> the task rules that can fire there
        self._rule_lists: dict[tuple[str, bool, bool], tuple[TaskRule, ...]] = {}
        # What changed since the engine last published (it copies only that).
        self.touched: set[str] = set()  # tasks whose verdict, findings or severities changed
        self.full_pending = True  # everything was rebuilt

    def context(self, agents: Mapping[str, Agent], as_of: datetime, live: bool) -> JudgeContext:
        return JudgeContext(as_of=as_of, thresholds=self.thresholds, live=live,
                            semantics=self.semantics, agents=agents,
                            agents_naming=agents_naming(agents), has_db=self.has_db,
                            reviews=self.reviews)

    def run(self, tasks: Mapping[str, Task], agents: Mapping[str, Agent], as_of: datetime,
            live: bool, dirty: Iterable[str] | None = None) -> AbstractSet[str]:
        """Judge everything (dirty=None) or the dirty tasks and their dependents.
        Returns the ids whose verdict or findings were recomputed."""
        ctx = self.context(agents, as_of, live)
        if dirty is None:
            # new containers, never cleared ones: a one-shot engine published the old ones
            self.judged = {}
            self.subject_findings = ()
            self._subject_by_id = {}
            self.task_findings = {}
            self.verdicts = {}
            self._blocked_on.clear()
            self._blocks.clear()
            self.time_sensitive.clear()
            self._failed.clear()
            self._order = FindingOrder()
            self.claims_by_agent = {}
            self.by_task = {}
            self.state_counts = {}
            self.severity_counts = dict.fromkeys(Severity, 0)
            self.tasks_by_severity = {s: {} for s in Severity}
            self.full_pending = True
            self.touched.clear()
            # every task, as a view: a set copy of 100,000 ids (and another for the union
            # in _finish) only raised the judging's peak memory
            ids: AbstractSet[str] = tasks.keys()
        else:
            if not self.incremental:
                raise RuntimeError("a judge made for full runs only (incremental=False) "
                                   "cannot re-judge some tasks")
            wanted = set(dirty)
            for tid in list(wanted):
                wanted |= self._blocked_on.get(tid, set())
            for tid in list(wanted):
                if tid not in tasks:
                    self._forget(tid)
            ids = {t for t in wanted if t in tasks}

        # Phase one: verdicts.
        if not self.incremental:  # a full run only: no index for re-judging later
            judged = self.judged
            for tid in ids:
                task = tasks[tid]
                v, sj, problem = make_verdict(task, ctx)
                judged[tid] = Judged(task, v, sj, problem)
        else:
            for tid in ids:
                task = tasks[tid]
                v, sj, problem = make_verdict(task, ctx)
                j = Judged(task=task, verdict=v, state=sj, claim_problem=problem)
                self.judged[tid] = j
                self._index_blockers(j)
                # Verdicts that time alone can change (a dead claim stays dead until a signal
                # comes, and a signal is an event).
                if ((sj.effectively_claimed and v.liveness is not Liveness.DEAD)
                        or problem in ("split_brain_live", "split_brain_stale", "stale")
                        or tid in ctx.agents_naming
                        or (sj.mismatch and not mismatch_settled(task, ctx))):
                    self.time_sensitive.add(tid)
                else:
                    self.time_sensitive.discard(tid)
        # Tasks blocked by a task whose verdict changed must see the new verdict.
        rctx = RuleContext(judge=ctx, judged=self.judged)
        renames = self.semantics.kind_names
        self._judge_subjects(rctx)
        rule_lists = self._rule_lists
        judged, task_findings = self.judged, self.task_findings
        for tid in ids:
            j = judged[tid]
            scope = (j.verdict.effective_state, j.claim_problem is not None, regular(j))
            rules = rule_lists.get(scope)
            if rules is None:
                rules = rule_lists[scope] = rules_for(scope[0], scope[1], self.semantics,
                                                     is_regular=scope[2])
            new = tuple([f for rule in rules for f in rule(j, rctx)])
            if renames:
                new = _renamed(new, renames)
            old = task_findings.get(tid, ())
            if new == old:
                # Keep the objects the order holds: swapping in equal copies would leave the
                # old ones in the order, unfindable by identity, and listed forever.
                continue
            if dirty is not None:
                self._order.replace(old, new)
            if new:
                self.task_findings[tid] = new
            elif old:
                del self.task_findings[tid]
        # Group rules look across failed tasks: rerun only when a failed task came or went.
        failed_states = self.semantics.failed_states
        failed_now = {t for t in ids
                      if self.judged[t].verdict.effective_state in failed_states}
        if dirty is not None and not (failed_now | (self._failed & ids)) \
                and not self._group_dirty:
            self._failed -= ids
            return self._finish(ids, set())
        self._group_dirty = False
        self._failed = (self._failed - ids) | failed_now
        group: list[Finding] = []
        for grule in group_rules(self.semantics):
            group.extend(grule(rctx, (self.judged[t] for t in self._failed)))
        if renames:
            group = list(_renamed(tuple(group), renames))
        changed_group = {f.task_id for f in group} ^ {f.task_id for f in self.group_findings}
        old_group = {f.task_id for f in self.group_findings}
        if dirty is None:
            self.group_findings = tuple(group)
            self._order.rebuild([f for fs in self.task_findings.values() for f in fs]
                                + group + list(self.subject_findings))
        elif tuple(group) != self.group_findings:
            self._order.replace(self.group_findings, tuple(group))
            self.group_findings = tuple(group)
        else:
            group = list(self.group_findings)  # equal: keep the objects the order holds
        by_task_group: dict[str, list[Finding]] = {}
        for f in group:
            by_task_group.setdefault(f.task_id, []).append(f)
        return self._finish(ids, changed_group | (old_group & set(by_task_group)), by_task_group)

    def _finish(self, ids: AbstractSet[str], extra: set[str],
                by_task_group: dict[str, list[Finding]] | None = None) -> AbstractSet[str]:
        """Final verdicts (with the one recommended action) for everything re-judged."""
        if by_task_group is None:
            by_task_group = self._group_by_task
        else:
            self._group_by_task = by_task_group
        more = [t for t in extra if t not in ids]
        # (a full run's ids are every task: no union copy of them)
        touched = ids | set(more) if more or isinstance(ids, set) else ids
        for tid in itertools.chain(ids, more):
            j = self.judged.get(tid)
            if j is None:
                continue
            fs = self.task_findings.get(tid, ()) + tuple(by_task_group.get(tid, ())) \
                + self._subject_by_id.get(tid, ())
            self._index_findings(tid, fs)
            v = j.verdict
            action = choose_action(v, fs, self.semantics)
            old_v = self.verdicts.get(tid)
            if old_v is not None:
                self.state_counts[old_v.effective_state] -= 1
            self.state_counts[v.effective_state] = \
                self.state_counts.get(v.effective_state, 0) + 1
            if old_v is not None and old_v.claimed_by and old_v.claimed_by != v.claimed_by:
                self.claims_by_agent.get(old_v.claimed_by, set()).discard(tid)
            if v.claimed_by:
                self.claims_by_agent.setdefault(v.claimed_by, set()).add(tid)
            if action is not v.recommended_action:
                v = verdict(v.effective_state, v.liveness, v.split_brain_live, action,
                            v.claimed_by, v.reason, v.evidence)
                # one verdict per task kept, not the phase-one one beside the final one
                self.judged[tid] = Judged(task=j.task, verdict=v, state=j.state,
                                          claim_problem=j.claim_problem)
            self.verdicts[tid] = v
            if not self.full_pending:  # (after a full run everything is published anew)
                self.touched.add(tid)
        return touched

    def _index_findings(self, tid: str, fs: tuple[Finding, ...]) -> None:
        old = self.by_task.get(tid, ())
        if not fs and not old:
            return  # (a third of the tasks: no set building for them)
        if len(fs) > 1:
            fs = tuple(sorted(fs, key=_task_order_key))
        for f in old:
            self.severity_counts[f.severity] -= 1
        for f in fs:
            self.severity_counts[f.severity] += 1
        old_sevs = {f.severity for f in old}
        new_sevs = {f.severity for f in fs}
        for sev in old_sevs ^ new_sevs:
            if sev in new_sevs:
                self.tasks_by_severity[sev][tid] = None
            else:
                self.tasks_by_severity[sev].pop(tid, None)
        if (fs or old) and not self.full_pending:
            self.touched.add(tid)
        if fs:
            self.by_task[tid] = fs
        elif old:
            del self.by_task[tid]

    def _index_blockers(self, j: Judged) -> None:
        tid = j.task.task_id
        new = blocked_by(j)
        old = self._blocks.get(tid, ())
        if new == old:
            return
        for b in old:
            s = self._blocked_on.get(b)
            if s is not None:
                s.discard(tid)
        for b in new:
            self._blocked_on.setdefault(b, set()).add(tid)
        self._blocks[tid] = new

    def _forget(self, tid: str) -> None:
        old_v = self.verdicts.get(tid)
        if old_v is not None and old_v.claimed_by:
            self.claims_by_agent.get(old_v.claimed_by, set()).discard(tid)
        self._order.replace(self.task_findings.get(tid, ()), ())
        if tid in self._failed:
            self._group_dirty = True
        self._failed.discard(tid)
        self._index_findings(tid, ())
        if old_v is not None:
            self.state_counts[old_v.effective_state] -= 1
        self.judged.pop(tid, None)
        self.task_findings.pop(tid, None)
        self.verdicts.pop(tid, None)
        self.touched.add(tid)
        self.time_sensitive.discard(tid)
        for b in self._blocks.pop(tid, ()):
            s = self._blocked_on.get(b)
            if s is not None:
                s.discard(tid)

    def _judge_subjects(self, rctx: RuleContext) -> None:
        """Findings about the queue itself or an agent (the format's subject rules), rerun
        at every judgement: they read the few facts and agents, not the tasks."""
        rules = subject_rules(self.semantics)
        if not rules and not self.subject_findings:
            return
        new = tuple(f for rule in rules for f in rule(rctx, self.facts))
        old = self.subject_findings
        if new == old:
            return
        self._order.replace(old, new)
        self.subject_findings = new
        by_subject: dict[str, tuple[Finding, ...]] = {}
        for f in new:
            by_subject[f.task_id] = by_subject.get(f.task_id, ()) + (f,)
        self._subject_by_id = by_subject
        for subject in {f.task_id for f in old} | set(by_subject):
            self._index_findings(subject, self.task_findings.get(subject, ())
                                 + tuple(self._group_by_task.get(subject, ()))
                                 + by_subject.get(subject, ()))

    def scored_kinds(self, tid: str) -> frozenset[str]:
        """The scored finding kinds the task has now (as last judged)."""
        return frozenset(f.kind for f in self.by_task.get(tid, ()) if f.scored)

    def preview(self, tasks: Iterable[Task], agents: Mapping[str, Agent], as_of: datetime,
                live: bool) -> dict[str, frozenset[str]]:
        """The scored kinds each task's own rules would find in it, keeping nothing (the
        engine asks before publishing a change; group rules are not previewed)."""
        ctx = self.context(agents, as_of, live)
        rctx = RuleContext(judge=ctx, judged=self.judged)
        out = {}
        for task in tasks:
            v, sj, problem = make_verdict(task, ctx)
            j = Judged(task=task, verdict=v, state=sj, claim_problem=problem)
            out[task.task_id] = frozenset(
                self.semantics.kind(f.kind)
                for rule in rules_for(v.effective_state, problem is not None, self.semantics)
                for f in rule(j, rctx) if f.scored)
        return out

    def findings(self) -> tuple[Finding, ...]:
        """Every finding, most severe first (kept in order as findings change)."""
        return self._order.snapshot()
