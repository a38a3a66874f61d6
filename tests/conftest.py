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


# ------------------------------------------------------------------ PostgreSQL

@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster on loopback for the whole run (tests/pgcluster.py),
    stopped at the end. Without the server binaries the tests that need it skip, saying why;
    in CI (``CI`` set) they fail instead: there PostgreSQL must be installed (.ci/run)."""
    from tests import pgcluster

    cluster, why = pgcluster.start_or_why()
    if cluster is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {why}")
        pytest.skip(f"PostgreSQL unavailable: {why}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_db(pg_cluster, request):
    """A new empty database in the session's cluster: its DSN (superuser)."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + \
        uuid.uuid4().hex[:6]
    return pg_cluster.create_db(name)
