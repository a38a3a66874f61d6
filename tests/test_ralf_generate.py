"""Generated RALF states score P = R = 1 against their own truth; the live simulation's
states are read without a problem and a sync puts them right."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.formats.ralf.demo import Simulation, generate
from qwarden.core.formats.ralf.sync import apply_sync, plan_sync, undo_sync
from qwarden.core.timefmt import parse_as_of
from tests.ralf_util import tree_bytes


def _check(root: Path, truth: dict) -> None:
    findings, src = judge_once(root, parse_as_of(truth["as_of"]), fmt="ralf")
    assert src.problems() == ()
    got = kinds_by_subject(findings)
    want = {s: set(k) for s, k in truth["tasks"].items() if k}
    assert got == want
    info = kinds_by_subject(findings, scored=False)
    for s, kinds in truth["unscored_info"].items():
        assert set(kinds) <= info.get(s, set()), s


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("layout", ["early", "later"])
def test_generated_states_score_perfectly(tmp_path: Path, seed: int, layout: str) -> None:
    truth = generate(120 + 37 * seed, tmp_path / "g", seed=seed, layout=layout)
    _check(tmp_path / "g", truth)


def test_generated_mix_covers_every_kind(tmp_path: Path) -> None:
    seen: set[str] = set()
    for seed in range(12):
        truth = generate(60, tmp_path / f"g{seed}", seed=seed)
        seen |= {k for ks in truth["tasks"].values() for k in ks}
        seen |= {k for ks in truth["unscored_info"].values() for k in ks}
    assert seen == {"queue_stale_entry", "missing_from_queue", "queue_orphan_entry",
                    "stale_queue_metadata", "corrupt_queue_file", "stale_heartbeat",
                    "future_timestamp", "completed_without_event"}


def test_generate_10k_fast_and_perfect(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    truth = generate(10_000, tmp_path / "g", seed=3)
    gen_s = time.perf_counter() - t0
    assert gen_s < 20, gen_s
    t0 = time.perf_counter()
    _check(tmp_path / "g", truth)
    print(f"\n10k: generate {gen_s:.2f}s, read+judge {time.perf_counter() - t0:.2f}s")


def test_generated_state_sync_round_trip(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        root = tmp_path / f"g{seed}"
        truth = generate(200, root, seed=seed)
        plan = plan_sync(root, parse_as_of(truth["as_of"]))
        stale = {s for s, k in truth["tasks"].items() if "queue_stale_entry" in k}
        missing = {s for s, k in truth["tasks"].items() if "missing_from_queue" in k}
        assert set(plan.removed) == stale and set(plan.added) == missing
        if "corrupt_queue_file" in truth["tasks"]["queue"]:
            continue  # (events.yaml is not sync's to mend)
        before = tree_bytes(root)
        apply_sync(plan)
        findings, _ = judge_once(root, parse_as_of(truth["as_of"]), fmt="ralf")
        left = {k for ks in kinds_by_subject(findings).values() for k in ks}
        assert not left & {"queue_stale_entry", "missing_from_queue", "stale_queue_metadata"}
        undo_sync(root)
        assert tree_bytes(root) == before


def test_live_simulation_states_read_cleanly(tmp_path: Path) -> None:
    sim = Simulation(tmp_path / "live", seed=5, fault_rate=0.5)
    kinds: set[str] = set()
    for _ in range(40):
        sim.step()
        findings, src = judge_once(tmp_path / "live", parse_as_of("2030-01-01T00:00:00Z"),
                                   fmt="ralf")
        assert src.problems() == ()
        kinds |= {f.kind for f in findings}
    assert "queue_stale_entry" in kinds or "missing_from_queue" in kinds
    apply_sync(plan_sync(tmp_path / "live"))
    findings, _ = judge_once(tmp_path / "live", parse_as_of("2030-01-01T00:00:00Z"), fmt="ralf")
    assert not {f.kind for f in findings} & {"queue_stale_entry", "missing_from_queue"}
