"""The coordination format through the qwarden command: detected by --format auto, judged
by the engine at P = R = 1, the demo (generate and the live simulation), and the action
commands with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwarden.core.cli import main
from qwarden.core.formats import detect
from qwarden.core.formats.coordination import simulate as S
from tests.coord_util import entry, judged, now, worker, write_state


def test_generate_then_report_auto_detected(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    out = tmp_path / "g"
    assert main(["demo", "--format", "coordination", "--generate", "400", "--out", str(out),
                 "--seed", "4"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    info = detect(out)
    assert info is not None and info.name == "coordination"
    capsys.readouterr()
    code = main(["report", "--root", str(out), "--as-of", truth["as_of"], "--json"])
    assert code == 2
    rep = json.loads(capsys.readouterr().out)
    assert rep["format"] == "coordination"
    got: dict[str, set[str]] = {}
    for f in rep["findings"]:
        if f["scored"]:
            got.setdefault(f["task_id"], set()).add(f["kind"])
    assert got == {s: set(k) for s, k in truth["tasks"].items() if k}


def test_action_commands_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture
                                        ) -> None:
    r = tmp_path / "q"
    write_state(r, [entry(1, "in_progress", "dead", claim_age_s=900),
                    entry(2, "in_progress", "live", claim_age_s=10),
                    entry(3, "failed", "live", error="boom")],
                {"dead": worker(["x"], 900), "live": worker(["x"], 2)})
    before = (r / "task-queue.json").read_bytes()
    assert main(["reset", "1", "--root", str(r), "--dry-run"]) == 0
    assert "status: \"in_progress\" -> \"pending\"" in capsys.readouterr().out
    assert (r / "task-queue.json").read_bytes() == before
    assert main(["reset", "2", "--root", str(r), "--yes"]) == 1  # a live worker holds it
    assert "live worker holds it" in capsys.readouterr().err
    assert main(["release", "1", "--root", str(r), "--yes"]) == 0
    assert main(["retry", "3", "--root", str(r), "--yes"]) == 0
    assert main(["cancel", "3", "--note", "no longer wanted", "--root", str(r),
                 "--read-only", "--yes"]) == 1
    assert main(["accept", "3", "--root", str(r), "--yes"]) == 1  # not this format's
    assert main(["undo", "--root", str(r), "--yes"]) == 0
    assert main(["undo", "--root", str(r), "--yes"]) == 0
    assert (r / "task-queue.json").read_bytes() == before
    capsys.readouterr()
    assert main(["log", "--root", str(r)]) == 0
    assert capsys.readouterr().out.count("  undone ") == 2
    assert main(["repair", "--root", str(r), "--yes"]) == 1  # nothing to repair
    assert main(["reset", "--root", str(r), "--yes"]) == 64


def test_demo_headless_runs(tmp_path: Path) -> None:
    assert main(["demo", "--format", "coordination", "--headless", "--steps", "2",
                 "--dir", str(tmp_path / "d")]) in (0, 1, 2)
    assert (tmp_path / "d" / "coordination" / "task-queue.json").exists()


def test_simulated_faults_are_found(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    sim = S.Simulation(root, seed=3, workers=4, demo_clock=False)
    for _ in range(5):
        sim.tick()
    # the design's failure modes, on purpose
    a, b = sorted(sim.alive)[:2]
    sim.holding.pop(a, None)
    sim.holding.pop(b, None)
    S.add_task(root, "race me", tid=424242)
    # (a and b hold nothing now as far as the queue says: free their claims)

    def free(q: list) -> bool:
        for t in q:
            if t.get("claimed_by") in (a, b) and t.get("status") == "in_progress":
                t["status"] = "completed"
                t["result"] = {"status": "success"}
        return True
    S.update_queue(root, free)
    S.update_worker(root, a, last_task_completed=S._now())
    S.update_worker(root, b, last_task_completed=S._now())
    tid = S.racy_claim(root, a, b)
    assert tid is not None
    got = judged(root, now())
    assert "lost_claim" in got.get(str(tid), set()), got
    S.torn_write(root, sim.rng)
    got = judged(root, now())
    assert "corrupt_queue_file" in got.get("queue", set())
    assert S.validate_queue(root)
    assert "queue" not in judged(root, now())
