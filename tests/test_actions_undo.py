"""Undo round-trips (hypothesis): any sequence of interventions on distinct tasks, undone in any
order, leaves the queue byte for byte and row for row as it was."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwarden.core.actions.apply import apply, undo
from qwarden.core.actions.journal import Journal
from qwarden.core.formats.octopoid.actions import make_plan
from tests.test_actions_support import IDS, build_state, snapshot

NOW = datetime(2026, 11, 22, 22, 30, 0)

# task -> the interventions that apply to it (kind, extra planner options)
OPTIONS: dict[str, list[tuple[str, dict[str, object]]]] = {
    "failed": [("retry", {}), ("cancel", {"note": "not needed"}), ("escalate", {})],
    "zombie": [("release", {}), ("retry", {})],
    "provisional": [("accept", {}), ("cancel", {"note": "wrong approach"})],
    "mismatch_db": [("sync", {"direction": "sync_db"})],
    "mismatch_file": [("sync", {"direction": "sync_file"})],
    "stale_error": [("clear-error", {"note": "old news"})],
    "orphan": [("register", {}), ("quarantine", {"force": True})],
    "corrupt": [("quarantine", {})],
    "done": [("mark-read", {}), ("escalate", {"msg_type": "question"})],
    "continuation": [("retry", {"note": "carry on"})],
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_undo_round_trip(data: st.DataObject) -> None:
    tasks = data.draw(st.lists(st.sampled_from(sorted(OPTIONS)), min_size=1, max_size=4,
                               unique=True), label="tasks")
    with tempfile.TemporaryDirectory() as tmp:
        root, _ = build_state(Path(tmp), now=NOW)
        before = snapshot(root)
        done: list[int] = []
        for name in tasks:
            kind, spec = data.draw(st.sampled_from(OPTIONS[name]), label=name)
            opts = dict(spec)  # the table is shared between examples: never mutate it
            note = str(opts.pop("note", ""))
            plan = make_plan(root, kind, IDS[name], actor="qwarden:hyp", note=note, now=NOW,
                             **opts)  # type: ignore[arg-type]
            done.append(apply(root, plan).action_id)
        order = data.draw(st.permutations(done), label="undo order")
        for aid in order:
            undo(root, aid)
        assert snapshot(root) == before
        with Journal(root) as j:
            assert all(j.get(a).state == "undone" for a in done)  # type: ignore[union-attr]


def test_undo_newest_by_default(tmp_path: Path) -> None:
    root, _ = build_state(tmp_path, now=NOW)
    s0 = snapshot(root)
    apply(root, make_plan(root, "retry", IDS["failed"], actor="t", now=NOW))
    s1 = snapshot(root)
    apply(root, make_plan(root, "accept", IDS["provisional"], actor="t", now=NOW))
    undo(root)  # the accept
    assert snapshot(root) == s1
    undo(root)  # then the retry (undos themselves are skipped)
    assert snapshot(root) == s0
