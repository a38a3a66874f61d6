"""Each finding rule on its own, on real files and a real SQLite DB, positive and negative."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwarden.core.formats import open_engine
from qwarden.core.model import Liveness, Snapshot
from qwarden.core.timefmt import parse_as_of
from tests.builders import StateBuilder


@pytest.fixture(autouse=True)
def _utc(utc_tz: None) -> None:
    pass


@pytest.fixture
def b(tmp_path: Path) -> StateBuilder:
    return StateBuilder(tmp_path)


def judge(b: StateBuilder) -> Snapshot:
    return open_engine(b.build(), as_of=parse_as_of(b.now.isoformat())).scan()


def kinds(snap: Snapshot, tid: str) -> set[str]:
    return {f.kind for f in snap.findings_for(tid) if f.scored}


def claim(age: float, agent: str = "a1") -> list:
    return [("CLAIMED_BY", agent), ("CLAIMED_AT", age)]


# ---------------------------------------------------------------- file_db_mismatch
def test_db_mode_claim_with_file_in_incoming_is_normal(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", file_queues=("incoming",), trail=claim(600),
           db={"claimed_by": "a1", "claimed_at": 600})
    b.agent("a1", heartbeat_age=30, status=("t1", 30))
    snap = judge(b)
    assert kinds(snap, "t1") == set()
    assert snap.verdicts["t1"].liveness is Liveness.LIVE


def test_mismatch_file_newer_recommends_sync_db(b: StateBuilder) -> None:
    b.task("t1", db_queue="failed", file_queues=("incoming",),
           trail=claim(1200) + [("FAILED_AT", 1100), ("RETRIED_AT", 900)],
           db={"claimed_by": "a1", "claimed_at": 1200, "updated_at": 1100})
    snap = judge(b)
    f = next(f for f in snap.findings_for("t1") if f.kind == "file_db_mismatch")
    assert f.newer_side.value == "file" and f.recommended_action.value == "sync_db"
    assert snap.verdicts["t1"].effective_state == "incoming"


def test_mismatch_db_newer_recommends_sync_file(b: StateBuilder) -> None:
    b.task("t1", db_queue="done", file_queues=("provisional",),
           trail=claim(3000) + [("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 2)],
           db={"updated_at": 900, "commits_count": 2})
    snap = judge(b)
    f = next(f for f in snap.findings_for("t1") if f.kind == "file_db_mismatch")
    assert f.newer_side.value == "db" and f.recommended_action.value == "sync_file"


def test_mismatch_sides_closer_than_their_precision_are_of_unknown_order(b: StateBuilder
                                                                         ) -> None:
    # 0.35 s between a microsecond file stamp and a second-precision DB stamp: no evidence of
    # which came last, so no direction to sync in (and no auto-fix).
    from datetime import timedelta

    file_t = (b.now - timedelta(seconds=2000) + timedelta(seconds=0.35)).isoformat()
    b.task("t1", db_queue="failed", file_queues=("provisional",),
           trail=claim(3000) + [("SUBMITTED_AT", file_t), ("COMMITS_COUNT", 2)],
           db={"updated_at": 2000, "commits_count": 2})
    snap = judge(b)
    f = next(f for f in snap.findings_for("t1") if f.kind == "file_db_mismatch")
    assert f.newer_side is None and f.recommended_action.value == "review"
    assert "cannot be told" in f.summary


def test_mismatch_within_grace_is_not_reported(b: StateBuilder) -> None:
    b.task("t1", db_queue="done", file_queues=("provisional",), file_age_s=60,
           trail=claim(3000) + [("SUBMITTED_AT", 60)], db={"updated_at": 900, "commits_count": 1})
    assert "file_db_mismatch" not in kinds(judge(b), "t1")


# ---------------------------------------------------------------- orphan / corrupt / missing / dup
def test_orphan_file(b: StateBuilder) -> None:
    b.task("t1", db_queue=None)
    snap = judge(b)
    assert kinds(snap, "t1") == {"orphan_file"}
    assert snap.verdicts["t1"].recommended_action.value == "register"


def test_corrupt_file_is_not_also_orphan(b: StateBuilder) -> None:
    b.task("t1", db_queue=None, raw={"incoming": b"\x00\x01\xffgarbage"})
    assert kinds(judge(b), "t1") == {"corrupt_task"}


def test_missing_file(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", file_queues=())
    assert kinds(judge(b), "t1") == {"missing_file"}


def test_stub_in_second_dir_is_duplicate_not_corrupt(b: StateBuilder) -> None:
    b.task("t1", db_queue="done", file_queues=("done", "provisional"),
           trail=claim(3000) + [("SUBMITTED_AT", 2500), ("COMMITS_COUNT", 2),
                                ("ACCEPTED_AT", 2000), ("ACCEPTED_BY", "scheduler")],
           db={"commits_count": 2},
           raw={"provisional": b"\nACCEPTED_AT: 2026-11-22T20:00:00\nACCEPTED_BY: recycler\n"})
    snap = judge(b)
    assert kinds(snap, "t1") == {"duplicate_file"}
    assert snap.tasks["t1"].primary_file.queue == "done"


def test_lone_stub_without_row_is_corrupt(b: StateBuilder) -> None:
    b.task("t1", db_queue=None, raw={"incoming": b"ACCEPTED_AT: 2026-11-22T20:00:00\n"})
    assert kinds(judge(b), "t1") == {"corrupt_task"}


# ---------------------------------------------------------------- claims
def test_zombie_agent_without_any_state(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", trail=claim(4 * 3600, "ghost"),
           db={"claimed_by": "ghost", "claimed_at": 4 * 3600})
    snap = judge(b)
    assert kinds(snap, "t1") == {"zombie_claim"}
    assert snap.verdicts["t1"].liveness is Liveness.DEAD


def test_young_claim_without_agent_state_is_unknown_not_zombie(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", trail=claim(600, "ghost"),
           db={"claimed_by": "ghost", "claimed_at": 600})
    snap = judge(b)
    assert kinds(snap, "t1") == set()
    assert snap.verdicts["t1"].liveness is Liveness.UNKNOWN


def test_zombie_agent_not_running_and_finished_long_ago(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", trail=claim(1800), db={"claimed_by": "a1",
                                                            "claimed_at": 1800})
    b.agent("a1", running=False, started_age=1700, finished_age=1200)
    assert kinds(judge(b), "t1") == {"zombie_claim"}


def test_crash_stamped_last_finished_does_not_hide_a_zombie(b: StateBuilder) -> None:
    # Octopoid's own rule is defeated when the scheduler stamps last_finished on a crash.
    b.task("t1", db_queue="claimed", trail=claim(3 * 3600), db={"claimed_by": "a1",
                                                                "claimed_at": 3 * 3600})
    b.agent("a1", running=True, started_age=3 * 3600, finished_age=2 * 3600)
    assert kinds(judge(b), "t1") == {"zombie_claim"}


def test_stale_heartbeat_is_at_risk(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", trail=claim(2700), db={"claimed_by": "a1",
                                                            "claimed_at": 2700})
    b.agent("a1", started_age=2700, heartbeat_age=840, status=("t1", 840))
    snap = judge(b)
    assert kinds(snap, "t1") == {"stale_heartbeat"}
    assert snap.verdicts["t1"].liveness is Liveness.AT_RISK


def test_claim_ended_by_later_trail_event_is_not_a_claim(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", file_queues=("needs_continuation",),
           trail=claim(3 * 3600) + [("NEEDS_CONTINUATION_AT", 3 * 3600 - 60),
                                    ("CONTINUATION_REASON", "max_turns_reached")],
           db={"claimed_by": "a1", "claimed_at": 3 * 3600})
    snap = judge(b)
    assert kinds(snap, "t1") == {"file_db_mismatch"}  # never zombie_claim
    assert snap.verdicts["t1"].effective_state == "needs_continuation"


def test_split_brain_live(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(3600, "a7"))
    b.agent("a7", started_age=3600, heartbeat_age=20, status=("t1", 30), current_task="t1")
    snap = judge(b)
    assert kinds(snap, "t1") == {"split_brain"}
    v = snap.verdicts["t1"]
    assert v.liveness is Liveness.LIVE and v.split_brain_live
    assert v.recommended_action.value == "continue_supervision"


def test_split_brain_with_older_signal_is_at_risk_review(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(3600, "a7"))
    b.agent("a7", started_age=3600, heartbeat_age=900, status=("t1", 900))
    snap = judge(b)
    assert kinds(snap, "t1") == {"split_brain"}
    v = snap.verdicts["t1"]
    assert v.liveness is Liveness.AT_RISK and not v.split_brain_live
    assert v.recommended_action.value == "review"


def test_split_brain_when_the_db_names_a_dead_claimant_but_another_agent_works(
        b: StateBuilder) -> None:
    # DB: claimed by a1, long gone. a7 says it works on the task with fresh signals: not a
    # zombie to release (that would pull the task from under a7) but split brain, live.
    b.task("t1", db_queue="claimed", trail=claim(4 * 3600, "a1"),
           db={"claimed_by": "a1", "claimed_at": 4 * 3600})
    b.agent("a1", running=False, started_age=4 * 3600, finished_age=3 * 3600)
    b.agent("a7", started_age=1800, heartbeat_age=20, status=("t1", 30), current_task="t1")
    snap = judge(b)
    assert kinds(snap, "t1") == {"split_brain"}
    v = snap.verdicts["t1"]
    assert v.liveness is Liveness.LIVE and v.split_brain_live and v.claimed_by == "a7"
    assert v.recommended_action.value == "continue_supervision"
    assert "a7" in v.reason and "a1" in v.reason


def test_split_brain_names_the_same_agent_in_claimed_by_and_evidence(b: StateBuilder) -> None:
    # two other agents name the task; the fresher one is the one at work, everywhere
    b.task("t1", db_queue="claimed", trail=claim(4 * 3600, "a1"),
           db={"claimed_by": "a1", "claimed_at": 4 * 3600})
    b.agent("a1", running=False, started_age=4 * 3600, finished_age=3 * 3600)
    b.agent("a2", started_age=3600, heartbeat_age=600, status=("t1", 600))
    b.agent("a3", started_age=1800, heartbeat_age=10, status=("t1", 15), current_task="t1")
    v = judge(b).verdicts["t1"]
    assert v.claimed_by == "a3" and v.split_brain_live
    assert any(e.fact == "agent a3 says it works on it" for e in v.evidence)


def test_rival_agent_gone_quiet_leaves_the_claimants_verdict(b: StateBuilder) -> None:
    b.task("t1", db_queue="claimed", trail=claim(4 * 3600, "a1"),
           db={"claimed_by": "a1", "claimed_at": 4 * 3600})
    b.agent("a1", running=False, started_age=4 * 3600, finished_age=3 * 3600)
    b.agent("a7", started_age=4 * 3600, heartbeat_age=3 * 3600, status=("t1", 3 * 3600))
    assert kinds(judge(b), "t1") == {"zombie_claim"}


def test_split_brain_when_a_reset_handed_the_task_on_and_the_new_claimant_failed_it(
        b: StateBuilder) -> None:
    # a7 claimed; a DB-only reset (reset_stuck_claimed) gave the task to b2, who failed it.
    # The FAILED_AT ends b2's claim, not a7's: a7 still works on it (live split brain, and no
    # fix may touch it).
    b.task("t1", db_queue="failed", file_queues=("failed",),
           trail=claim(1800, "a7") + claim(600, "b2") + [
               ("FAILED_AT", 300), ("## Error", "```\nboom\n```")],
           db={"claimed_by": "b2", "claimed_at": 600})
    b.agent("a7", started_age=1800, heartbeat_age=1, status=("t1", 1), current_task="t1")
    b.agent("b2", running=False, started_age=600, finished_age=290)
    snap = judge(b)
    assert "split_brain" in kinds(snap, "t1")
    v = snap.verdicts["t1"]
    assert v.split_brain_live and v.claimed_by == "a7"
    assert v.recommended_action.value == "continue_supervision"


def test_an_agent_that_ended_its_own_claim_is_only_lagging(b: StateBuilder) -> None:
    b.task("t1", db_queue="failed", file_queues=("failed",),
           trail=claim(1800, "a7") + [("FAILED_AT", 300), ("## Error", "```\nboom\n```")],
           db={"claimed_by": "a7", "claimed_at": 1800})
    b.agent("a7", started_age=1800, heartbeat_age=1, status=("t1", 1), current_task="t1")
    assert "split_brain" not in kinds(judge(b), "t1")


def test_a_dead_pid_dates_the_death_from_the_newest_signal(b: StateBuilder, monkeypatch
                                                           ) -> None:  # type: ignore[no-untyped-def]
    # Killed while the scheduler was down: the later reap stamped last_finished a minute ago
    # and left exit code 1. The pid is dead and the agent's own last sign of life is 30 min
    # old: a zombie now, not 5 minutes after the reap's stamp.
    import qwarden.core.formats.octopoid.reader as octo

    b.task("t1", db_queue="claimed", trail=claim(3600), db={"claimed_by": "a1",
                                                            "claimed_at": 3600})
    b.agent("a1", running=False, pid=4_000_000, started_age=3600, finished_age=60,
            heartbeat_age=1800, status=("t1", 1800))
    root = b.build()
    state = root / "agents" / "a1" / "state.json"
    import json as _json
    d = _json.loads(state.read_text())
    d["last_exit_code"] = 1
    state.write_text(_json.dumps(d))
    monkeypatch.setattr(octo, "_pid_alive", lambda pid: False)
    live = open_engine(root, follow=False)
    live.as_of = None  # the live machine (pids checked), with the clock at the builder's now
    live.live = True
    monkeypatch.setattr(live, "clock", lambda: parse_as_of(b.now.isoformat()))
    assert kinds(live.scan(), "t1") == {"zombie_claim"}
    # and judged from the files alone (no pid check), the crash reap's exit code 1 says the
    # same: the finish is dated from the newest signal, not from the reap's stamp
    assert kinds(open_engine(root, as_of=parse_as_of(b.now.isoformat())).scan(), "t1") == \
        {"zombie_claim"}


def test_dead_agents_leftover_record_is_no_finding(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(3600, "a7"))
    b.agent("a7", running=False, started_age=3600, finished_age=3000, status=("t1", 3000))
    assert kinds(judge(b), "t1") == set()


# ---------------------------------------------------------------- errors, recycling
def test_stale_error_after_retry(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(1200) + [
        ("FAILED_AT", 1100), ("## Error", "```\nboom\n```"), ("RETRIED_AT", 900)])
    snap = judge(b)
    assert kinds(snap, "t1") == {"stale_error"}
    assert snap.verdicts["t1"].recommended_action.value == "clear_error"


def test_error_moved_under_history_is_not_stale(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(1200) + [
        ("## History", None), ("FAILED_AT", 1100), ("## Error", "```\nboom\n```"),
        ("RETRIED_AT", 900)])
    assert kinds(judge(b), "t1") == set()


def test_recycling_from_trail_and_from_db_counts(b: StateBuilder) -> None:
    b.task("t1", db_queue="incoming", trail=claim(5000) + [
        ("REJECTED_AT", 4000), ("RETRIED_AT", 3000), ("REVIEW_REJECTED_AT", 2000)])
    b.task("t2", db_queue="incoming", db={"attempt_count": 2, "rejection_count": 1})
    b.task("t3", db_queue="incoming", db={"attempt_count": 1, "rejection_count": 1})
    snap = judge(b)
    assert "recycling_task" in kinds(snap, "t1")
    assert kinds(snap, "t2") == {"recycling_task"}
    assert kinds(snap, "t3") == set()


def test_repeated_failure_groups_masked_signatures(b: StateBuilder) -> None:
    for i, tid in enumerate(("f1", "f2", "f3")):
        b.task(tid, db_queue="failed", file_queues=("failed",), trail=claim(1200) + [
            ("FAILED_AT", 1100),
            ("## Error", f"```\nTraceback\n  File \"app.py\", line {40 + i}\n"
                         f"KeyError: 'user-{i}{i}' at 0xdeadbeef{i}\n```")])
    b.task("f4", db_queue="failed", file_queues=("failed",), trail=claim(1200) + [
        ("FAILED_AT", 1100), ("## Error", "```\nValueError: other\n```")])
    snap = judge(b)
    assert all(kinds(snap, t) == {"repeated_failure"} for t in ("f1", "f2", "f3"))
    assert kinds(snap, "f4") == set()


# ---------------------------------------------------------------- completion, deps
def test_unverified_completion_and_its_negatives(b: StateBuilder) -> None:
    b.task("u1", db_queue="provisional", file_queues=("provisional",),
           trail=claim(3000) + [("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 0)],
           db={"commits_count": 0})
    b.task("u2", db_queue="provisional", file_queues=("provisional",),
           trail=claim(3000) + [("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 0)],
           db={"commits_count": 0,
               "check_results": '{"gk-testing": {"status": "pass", "summary": "ok"}}'})
    b.task("u3", db_queue="done", file_queues=("done",),
           trail=claim(3000) + [("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 3)],
           db={"commits_count": 3})
    snap = judge(b)
    assert kinds(snap, "u1") == {"unverified_completion"}
    assert snap.verdicts["u1"].recommended_action.value == "review"
    assert kinds(snap, "u2") == set()
    assert kinds(snap, "u3") == set()
    assert snap.verdicts["u2"].recommended_action.value == "accept"


def test_blocked_by_failed_missing_or_zombie(b: StateBuilder) -> None:
    b.task("dead", db_queue="claimed", trail=claim(4 * 3600, "ghost"),
           db={"claimed_by": "ghost", "claimed_at": 4 * 3600})
    b.task("bad", db_queue="failed", file_queues=("failed",),
           trail=claim(1200) + [("FAILED_AT", 1100)])
    b.task("ok", db_queue="incoming")
    b.task("w1", db_queue="incoming", db={"blocked_by": "dead"})
    b.task("w2", db_queue="incoming", db={"blocked_by": "bad, ok"})
    b.task("w3", db_queue="incoming", db={"blocked_by": "nosuch"})
    b.task("w4", db_queue="incoming", db={"blocked_by": "ok"})
    snap = judge(b)
    for t in ("w1", "w2", "w3"):
        assert kinds(snap, t) == {"blocked_by_stuck"}, t
    assert kinds(snap, "w4") == set()


# ---------------------------------------------------------------- modes
def test_file_only_mode_without_db(tmp_path: Path) -> None:
    b = StateBuilder(tmp_path, db=False)
    b.task("t1", db_queue=None)
    b.task("t2", db_queue=None, raw={"incoming": b"\x00bad"})
    snap = judge(b)
    # agents.yaml says database.enabled: false, so no row is expected: not an orphan.
    assert kinds(snap, "t1") == set()
    assert kinds(snap, "t2") == {"corrupt_task"}


def test_unread_terminal_until_a_supervisor_marks_it_read(b: StateBuilder) -> None:
    from qwarden.core.actions.apply import apply
    from qwarden.core.formats.octopoid.actions import make_plan

    b.task("d1", db_queue="done", file_queues=("done",),
           trail=[*claim(3000), ("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 2),
                  ("ACCEPTED_AT", 600), ("ACCEPTED_BY", "scheduler")],
           db={"commits_count": 2, "updated_at": 600})
    b.task("old", db_queue="done", file_queues=("done",),
           trail=[*claim(9 * 86400), ("ACCEPTED_AT", 8 * 86400)],
           db={"commits_count": 2, "updated_at": 8 * 86400})
    snap = judge(b)
    assert {f.kind for f in snap.findings_for("d1")} == {"unread_terminal"}
    assert not snap.findings_for("old")  # outside the unread window
    assert kinds(snap, "d1") == set()  # informative, never scored
    apply(b.root, make_plan(b.root, "mark-read", "d1", actor="qwarden:test"))
    again = open_engine(b.root, as_of=parse_as_of(b.now.isoformat())).scan()
    assert not again.findings_for("d1")


@pytest.mark.parametrize(("file_path", "stale"), [
    ("/elsewhere/.orchestrator/shared/queue/done/TASK-s1.md", False),
    ("done/TASK-s1.md", False),  # relative, as Octopoid sometimes stores it
    ("C:\\boxen\\.orchestrator\\shared\\queue\\done\\TASK-s1.md", False),
    ("/elsewhere/.orchestrator/shared/queue/incoming/TASK-s1.md", True),
    ("/elsewhere/.orchestrator/shared/queue/undone/TASK-s1.md", True),  # a dir ending "done"
    ("/elsewhere/.orchestrator/shared/queue/done/TASK-other.md", True),
    ("TASK-s1.md", True),  # no directory at all
])
def test_stale_file_path_compares_the_db_path_with_where_the_file_is(
        b: StateBuilder, file_path: str, stale: bool) -> None:
    b.task("s1", db_queue="done", file_queues=("done",),
           trail=[*claim(3000), ("SUBMITTED_AT", 2000), ("COMMITS_COUNT", 2),
                  ("ACCEPTED_AT", 600)],
           db={"commits_count": 2, "file_path": file_path})
    snap = judge(b)
    assert snap.tasks["s1"].record.file_path == file_path  # kept exactly, however stored
    found = [f for f in snap.findings_for("s1") if f.kind == "stale_file_path"]
    assert bool(found) is stale
    if stale:
        assert found[0].evidence[0].value == file_path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.builders import generated_utc_state

    yield from generated_utc_state(tmp_path_factory, "scope", 2000, seed=11)


def test_rules_are_called_only_where_they_can_fire(generated, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The registry's scope table only skips calls that would have found nothing: judging
    a generated state (every anomaly kind) with it and without it gives the same findings."""
    from qwarden.core.rules import registry

    root, as_of = generated
    scoped = open_engine(root, as_of=as_of).scan()
    monkeypatch.setattr(registry, "RULE_SCOPE", {})
    every_rule = open_engine(root, as_of=as_of).scan()
    assert [(f.kind, f.task_id, f.evidence) for f in scoped.findings] == \
        [(f.kind, f.task_id, f.evidence) for f in every_rule.findings]
    assert dict(scoped.verdicts) == dict(every_rule.verdicts)
    assert {f.kind for f in scoped.findings} >= {
        "zombie_claim", "recycling_task", "blocked_by_stuck", "unverified_completion",
        "escalated", "unread_terminal", "split_brain"}


def test_a_one_shot_judge_finds_what_a_following_one_finds(generated) -> None:  # type: ignore[no-untyped-def]
    """A one-shot engine's judge (``report``'s) builds no index for re-judging later; its
    verdicts and findings are the following engine's, and it refuses to re-judge part."""
    root, as_of = generated
    once = open_engine(root, as_of=as_of, follow=False)
    following = open_engine(root, as_of=as_of).scan()
    snap = once.scan()
    assert not once.judge.incremental and once.judge.time_sensitive == set()
    assert [(f.kind, f.task_id, f.evidence) for f in snap.findings] == \
        [(f.kind, f.task_id, f.evidence) for f in following.findings]
    assert dict(snap.verdicts) == dict(following.verdicts)
    with pytest.raises(RuntimeError):
        once.judge.run(once._tasks, {}, as_of, False, dirty=["x"])
