"""Shared fixtures. Tests never need ../shared: states are built by the project's own writers."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "octopoid-sample"


@pytest.fixture
def utc_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixtures' local times are those of a machine running in UTC."""
    import time

    from qwarden.core.timefmt import reset_local_zone_cache

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    reset_local_zone_cache()
    yield
    monkeypatch.undo()
    time.tzset()
    reset_local_zone_cache()


def restore_sample(dst: Path) -> dict:
    """Copy the shared sample, then restore mtimes as its README says."""
    shutil.copytree(SHARED_SAMPLE, dst)
    for dp, _dn, fn in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fn:
            os.chmod(os.path.join(dp, f), 0o644)
    truth = json.loads((dst / "truth.json").read_text())
    gen = datetime.fromisoformat(truth["generated_at"]).timestamp()
    for dp, _dn, fn in os.walk(dst / ".orchestrator"):
        for f in fn:
            os.utime(os.path.join(dp, f), (gen, gen))
    for rel, m in truth["mtimes"].items():
        os.utime(dst / ".orchestrator" / rel, (m, m))
    return truth


def snapshot_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (to prove reading changed nothing)."""
    out = {}
    for dp, _dn, fn in os.walk(root):
        for f in fn:
            p = Path(dp) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
