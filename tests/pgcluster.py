"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` in a temp dir,
listening on 127.0.0.1 on a free port (its unix socket in that dir too), stopped at the end.

Found at ``/usr/lib/postgresql/*/bin`` (Debian's layout) or on PATH. ``initdb`` refuses to
run as root: then the cluster is made and run as the ``postgres`` user (``runuser``), in a
dir that user owns. ``Cluster.dsn(db, user)`` gives a URL; ``psql`` runs SQL as the
superuser.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "qwarden_admin"
PASSWORD = "s3cret-pw"


def find_bindir() -> Path | None:
    """The server's bin dir (initdb and pg_ctl): ``$QWARDEN_PG_BINDIR`` when set (another
    layout than Debian's), else the newest ``/usr/lib/postgresql/*/bin``, else PATH; None
    when there is none."""
    given = os.environ.get("QWARDEN_PG_BINDIR")
    if given is not None:
        ok = all(os.access(os.path.join(given, b), os.X_OK) for b in ("initdb", "pg_ctl"))
        return Path(given) if ok else None
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                    reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) \
                and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return Path(d)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    return None


def why_unavailable() -> str | None:
    """None when a cluster can be started here, else one line saying why not."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and no runuser to run initdb as 'postgres'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    base: Path  # the temp dir: data/, the socket, the log
    port: int
    as_user: str | None  # run the server binaries as this user (root cannot)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *argv] if self.as_user else list(argv)

    def dsn(self, db: str = "postgres", user: str = SUPERUSER,
            password: str | None = PASSWORD) -> str:
        auth = user + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres", user: str = SUPERUSER) -> str:
        """Run SQL as ``user`` (over TCP, the cluster's password auth), return stdout."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        env = dict(os.environ, PGPASSWORD=PASSWORD if user == SUPERUSER else
                   os.environ.get("PGPASSWORD", ""))
        out = subprocess.run([psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", db,
                              "-c", sql], env=env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def create_db(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                                 "immediate", "-w", "stop"),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def start() -> Cluster:
    """Make and start a cluster (raises RuntimeError, with the server's words, if it cannot)."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found")
    as_user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="qwarden-pg-"))
    if as_user:
        pw = pwd.getpwnam(as_user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        # the temp dir's parents must be searchable by that user (mkdtemp's are, /tmp is)
    cluster = Cluster(bindir, base, _free_port(), as_user)
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        pw = pwd.getpwnam(as_user)
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    run = lambda *a: subprocess.run(cluster._cmd(*a), capture_output=True, text=True,  # noqa: E731
                                    timeout=120)
    out = run(str(bindir / "initdb"), "-D", str(cluster.data), "-U", SUPERUSER,
              "--pwfile", str(pwfile), "-A", "scram-sha-256", "-E", "UTF8",
              "--locale", "C.UTF-8" if _has_c_utf8() else "C", "--no-sync")
    if out.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {(out.stderr or out.stdout).strip()[-500:]}")
    opts = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
            f"-c unix_socket_directories={base} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=50 -c shared_buffers=64MB")
    out = run(str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(base / "log"),
              "-o", opts, "-w", "-t", "60", "start")
    if out.returncode != 0:
        log = (base / "log").read_text(errors="replace")[-800:] if (base / "log").exists() \
            else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {(out.stderr or out.stdout).strip()} {log}")
    deadline = time.monotonic() + 30
    while True:
        try:
            cluster.psql("SELECT 1")
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                cluster.stop()
                raise
            time.sleep(0.2)
    return cluster


def start_or_why() -> tuple[Cluster | None, str | None]:
    """A started cluster, or why there is none (no binaries, or it would not start)."""
    why = why_unavailable()
    if why is not None:
        return None, why
    try:
        return start(), None
    except RuntimeError as exc:
        return None, f"cannot start a PostgreSQL cluster: {exc}"


def _has_c_utf8() -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10)
        return any(x.lower() in ("c.utf8", "c.utf-8") for x in out.stdout.split())
    return False
