"""Generated coordination states score P = R = 1 against their own truth, in every shape the
design's files take (both id forms, claimed_at or started_at, the workers as a map or one
flat object, both comms-log shapes), and reading them changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.formats.coordination.generate import generate
from qwarden.core.formats.coordination.kinds import COORD_SCORED
from qwarden.core.timefmt import parse_any
from tests.coord_util import judged, tree


def _want(truth: dict) -> dict[str, set[str]]:
    return {s: set(k) for s, k in truth["tasks"].items() if k}


@pytest.mark.parametrize("seed", range(6))
def test_generated_map_states_score_perfectly(tmp_path: Path, seed: int) -> None:
    truth = generate(150 + 97 * seed, tmp_path / "g", seed)
    assert judged(tmp_path / "g") == _want(truth)


@pytest.mark.parametrize("seed", range(3))
def test_generated_flat_worker_states_score_perfectly(tmp_path: Path, seed: int) -> None:
    truth = generate(120 + 31 * seed, tmp_path / "g", seed, workers_shape="flat")
    ws = json.loads((tmp_path / "g" / "worker-status.json").read_text())
    assert ws["worker_id"] == "worker-solo" and "last_heartbeat" in ws  # one flat object
    assert judged(tmp_path / "g") == _want(truth)


def test_generated_mix_covers_every_kind_and_shape(tmp_path: Path) -> None:
    truth = generate(2000, tmp_path / "g", 7)
    seen = {k for ks in truth["tasks"].values() for k in ks}
    assert seen == COORD_SCORED
    assert judged(tmp_path / "g") == _want(truth)
    q = json.loads((tmp_path / "g" / "task-queue.json").read_text())
    ids = [e["id"] for e in q if isinstance(e, dict) and "id" in e]
    assert any(isinstance(i, int) for i in ids) and any(isinstance(i, str) for i in ids)
    keys = {k for e in q if isinstance(e, dict) for k in e}
    assert {"claimed_at", "started_at"} <= keys
    lines = [json.loads(ln) for ln in
             (tmp_path / "g" / "agent-comms.jsonl").read_text().splitlines()]
    assert any("agent" in ln for ln in lines) and any("from" in ln for ln in lines)
    # every subject's evidence is there, and the informative kinds the truth names
    findings, _ = judge_once(tmp_path / "g", parse_any(truth["as_of"]), fmt="coordination")
    assert all(f.evidence for f in findings if f.scored)
    info = kinds_by_subject(findings, scored=False)
    assert truth["unscored_info"]
    for s, kinds in truth["unscored_info"].items():
        assert set(kinds) <= info.get(s, set()), s


def test_reading_changes_nothing(tmp_path: Path) -> None:
    generate(300, tmp_path / "g", 2)
    before = tree(tmp_path / "g")
    time.sleep(0.01)
    judged(tmp_path / "g")
    assert tree(tmp_path / "g") == before


def test_generate_10k_and_judge_fast_enough(tmp_path: Path) -> None:
    truth = generate(10_000, tmp_path / "g", 1)
    t0 = time.perf_counter()
    got = judged(tmp_path / "g")
    took = time.perf_counter() - t0
    assert got == _want(truth)
    assert took < 10, took
