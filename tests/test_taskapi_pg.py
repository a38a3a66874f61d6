"""The task API format on a real PostgreSQL server (tests/pgcluster.py): the same states as in
SQLite judged the same, reports equal byte for byte but the root, read-only for real (a role
with only SELECT, read-only sessions), and a connection killed mid-scan recovers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qwarden.core.formats.taskapi import open_source
from qwarden.core.formats.taskapi.generate import AS_OF, generate, load_into_pg
from qwarden.core.formats.taskapi.pg import PgTasks
from qwarden.core.sources.errors import SourceError
from tests.taskapi_util import TASKAPI_SAMPLE, copy_sample, judged, sample_truth, want

AS_OF_TEXT = "2026-11-22T22:40:00Z"


def load(db: Path, dsn: str) -> int:
    return asyncio.run(load_into_pg(db, dsn))


def report(root: str, *extra: str) -> tuple[int, str, str]:
    out = subprocess.run([sys.executable, "-m", "qwarden.core.cli", "report", "--root", root,
                          "--as-of", AS_OF_TEXT, *extra], capture_output=True, text=True,
                         timeout=180)
    return out.returncode, out.stdout, out.stderr


def table_digest(cluster, db: str) -> str:
    """Every row and its xmin: any write by anyone changes it."""
    return cluster.psql("SELECT md5(string_agg(t::text || xmin::text, '|' ORDER BY id)) "
                        "FROM tasks t", db=db)


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


@pytest.mark.skipif(not TASKAPI_SAMPLE.is_dir(), reason="../shared/fixtures absent")
def test_sample_in_postgres_scores_truth_and_reports_equal_sqlite(tmp_path: Path,
                                                                   pg_db: str) -> None:
    truth = sample_truth()
    db = copy_sample(tmp_path / "s")
    assert load(db, pg_db) == 6
    assert judged(pg_db, truth["as_of"]) == want(truth)
    for extra in ((), ("--json",), ("--all",)):
        c1, out_sqlite, e1 = report(str(db), *extra)
        c2, out_pg, e2 = report(pg_db, *extra)
        assert (c1, e1) == (c2, e2) == (2, "")
        label = PgTasks(pg_db).label
        assert "s3cret-pw" not in out_pg and "***" in label
        assert out_pg.replace(label, "ROOT") == out_sqlite.replace(str(db), "ROOT")


@pytest.mark.parametrize(("seed", "checks"), [(11, False), (12, True)])
def test_generated_states_score_perfectly_in_both_databases(tmp_path: Path, pg_db: str,
                                                            seed: int, checks: bool) -> None:
    truth = generate(1200, tmp_path / "g.db", seed, with_checks=checks)
    load(tmp_path / "g.db", pg_db)
    assert judged(tmp_path / "g.db", truth["as_of"]) == want(truth)
    assert judged(pg_db, truth["as_of"]) == want(truth)
    c1, a, _ = report(str(tmp_path / "g.db"), "--json")
    c2, b, _ = report(pg_db, "--json")
    ja, jb = json.loads(a), json.loads(b)
    assert ja.pop("root") == str(tmp_path / "g.db") and "***" in jb.pop("root")
    assert c1 == c2 and ja == jb


def test_a_select_only_role_reads_in_read_only_sessions_and_writes_nothing(
        tmp_path: Path, pg_cluster, pg_db: str) -> None:
    truth = generate(300, tmp_path / "g.db", 5)
    load(tmp_path / "g.db", pg_db)
    name = dbname(pg_db)
    pg_cluster.psql("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                    "'qwarden_reader') THEN CREATE ROLE qwarden_reader LOGIN PASSWORD "
                    "'reader-pw'; END IF; END$$")
    pg_cluster.psql("REVOKE ALL ON tasks FROM PUBLIC; GRANT SELECT ON tasks TO "
                    "qwarden_reader", db=name)
    reader = pg_cluster.dsn(name, "qwarden_reader", "reader-pw")
    before = table_digest(pg_cluster, name)
    assert judged(reader, truth["as_of"]) == want(truth)
    for dsn in (reader, pg_db):  # the superuser's session is read-only too
        src = open_source(dsn)
        try:
            src.scan()
            assert src.table.setting("default_transaction_read_only") == "on"
            with pytest.raises(SourceError, match="read-only transaction"):
                src.table._read(lambda conn: conn.execute(
                    "UPDATE tasks SET title = 'x' WHERE id = 1"))
        finally:
            src.close()
    assert table_digest(pg_cluster, name) == before


def test_a_connection_killed_mid_scan_recovers(tmp_path: Path, pg_cluster, pg_db: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    truth = generate(25_000, tmp_path / "g.db", 3)  # three cursor batches
    load(tmp_path / "g.db", pg_db)
    kills = {"left": 1, "done": 0}
    real = PgTasks.batch_read

    def kill_after_first_batch(self: PgTasks, rows: int) -> None:
        real(self, rows)
        if kills["left"] and rows < 25_000:
            kills["left"] -= 1
            kills["done"] += 1
            pg_cluster.psql(f"SELECT pg_terminate_backend({self.server_pid})")

    monkeypatch.setattr(PgTasks, "batch_read", kill_after_first_batch)
    # killed once: reconnected, the scan read again whole, the judgement exact
    assert judged(pg_db, truth["as_of"]) == want(truth)
    assert kills["done"] == 1
    # killed on every try: a clear SourceError, never a traceback or a hang
    kills["left"] = 10**6
    src = open_source(pg_db)
    try:
        with pytest.raises(SourceError, match="connection lost"):
            src.scan()
    finally:
        src.close()


def test_engine_keeps_the_last_snapshot_while_the_server_is_gone(
        tmp_path: Path, pg_cluster, pg_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwarden.core.formats import open_engine

    generate(200, tmp_path / "g.db", 4)
    load(tmp_path / "g.db", pg_db)
    name = dbname(pg_db)
    engine = open_engine(pg_db, as_of=AS_OF, follow=True)
    snap = engine.scan()
    n = len(snap.tasks)

    async def poll_while_refused() -> None:
        pg_cluster.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        pg_cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        f"datname = '{name}' AND pid <> pg_backend_pid()")
        got = await engine.poll_now()
        assert got is None and engine.snapshot is snap  # the last good one stays
        assert engine.last_error and "***" in engine.last_error
        assert "s3cret-pw" not in engine.last_error
        pg_cluster.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        got = await engine.poll_now()
        assert got is not None and len(got.tasks) == n and engine.last_error is None

    try:
        asyncio.run(poll_while_refused())
    finally:
        pg_cluster.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        engine.source.close()


def test_unreachable_server_and_foreign_database_are_one_line_errors(pg_cluster,
                                                                     pg_db: str) -> None:
    code, out, err = report("postgresql://someone:hunter22@127.0.0.1:1/nowhere")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert "cannot connect" in err and "hunter22" not in err and "***" in err
    code, out, err = report(pg_db)  # an empty database: no tasks table
    assert code == 3 and "no tasks table" in err and "Traceback" not in err


def test_the_source_root_and_label_never_hold_the_password(tmp_path: Path,
                                                           pg_db: str) -> None:
    """The console labels its header with the engine's root: a URL's password must not be
    in it (nor in the label, the report's root)."""
    from qwarden.core.formats import open_engine

    generate(20, tmp_path / "g.db", 1)
    load(tmp_path / "g.db", pg_db)
    engine = open_engine(pg_db, follow=False)
    try:
        assert "s3cret-pw" in pg_db
        for shown in (str(engine.root), engine.source.label, engine.scan().root):
            assert "s3cret-pw" not in shown and ":***@" in shown
    finally:
        engine.source.close()


@pytest.mark.parametrize("ci", [False, True])
def test_without_server_binaries_pg_tests_skip_saying_why_or_fail_in_ci(
        tmp_path: Path, ci: bool) -> None:
    """No initdb: outside CI the PostgreSQL tests skip with one line saying why; with CI set
    they fail loudly (CI must install the server: .ci/run does)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["QWARDEN_PG_BINDIR"] = str(tmp_path / "no-postgres-here")
    if ci:
        env["CI"] = "1"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "tests/test_taskapi_pg.py::test_the_source_root_and_label_never_"
                          "hold_the_password"], capture_output=True, text=True, timeout=120,
                         env=env, cwd=Path(__file__).resolve().parents[1])
    if ci:
        assert out.returncode != 0
        assert "PostgreSQL is required in CI: PostgreSQL server binaries (initdb, pg_ctl) " \
               "not installed" in out.stdout
    else:
        assert out.returncode == 0, out.stdout
        assert "1 skipped" in out.stdout
        assert "PostgreSQL unavailable: PostgreSQL server binaries (initdb, pg_ctl) not " \
               "installed" in out.stdout


def test_the_write_path_gets_the_real_dsn_behind_the_engines_root(tmp_path: Path,
                                                                  pg_db: str) -> None:
    """The console opens the write path with the engine's root (the label, no password):
    the format hands its write path the DSN the source was opened with."""
    from qwarden.core.config import Config
    from qwarden.core.formats import open_engine
    from qwarden.core.formats.taskapi import FORMAT_INFO

    generate(20, tmp_path / "g.db", 1)
    load(tmp_path / "g.db", pg_db)
    engine = open_engine(pg_db, follow=False)
    try:
        assert "s3cret-pw" not in str(engine.root)
        assert FORMAT_INFO.interventions is not None
        iv = FORMAT_INFO.interventions(engine.root, Config(), {"direct_db": True})
        assert iv.root == pg_db
    finally:
        engine.source.close()
