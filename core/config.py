"""Thresholds and options: one pydantic model, loaded from TOML.

Looked up in order: an explicit ``--config`` path, ``qwarden.toml`` beside the queue root (next to
the ``.orchestrator`` dir, or inside it), then ``~/.config/qwarden/config.toml``. Defaults are the
ones in the Octopoid v1 contract.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qwarden.core.safeio import read_whole


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mismatch_grace_s: float = Field(300, ge=0, description="a file must be settled this long")
    zombie_after_s: float = Field(3600, gt=0, description="no signal for this long: zombie")
    stale_after_s: float = Field(300, gt=0, description="no signal for this long: at risk")
    finished_grace_s: float = Field(300, ge=0,
                                    description="agent not running, finished this long ago")
    recycling_min: int = Field(3, ge=1, description="trips back to waiting before recycling_task")
    repeated_failure_min: int = Field(3, ge=2, description="tasks sharing an error signature")
    unread_window_s: float = Field(86400, ge=0, description="finished tasks this recent are "
                                   "unread_terminal until reviewed (0: off)")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_task_file_bytes: int = Field(256 * 1024, ge=4096, description="read at most this prefix")
    db_busy_retries: int = Field(5, ge=0)
    db_busy_timeout_ms: int = Field(2000, ge=0)


class LiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval_s: float = Field(300, gt=0, description="full reconciliation period")
    db_check_interval_s: float = Field(1.0, gt=0, description="PRAGMA data_version period")
    rejudge_interval_s: float = Field(5.0, gt=0, description="re-judge time-sensitive tasks")
    debounce_ms: int = Field(50, ge=1, description="watchfiles debounce")
    confirm_after_s: float = Field(
        0.5, ge=0, le=1.5, description="a scored finding born of a change is published only "
        "after a second look at both sides this much later (0: at once)")


class AlertOptions(BaseModel):
    """``watch --exec CMD``: how often the command may run, and for how long."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    exec_limit: int = Field(6, ge=1, description="at most this many runs per exec_window_s; "
                            "the findings over it go in one summary run")
    exec_window_s: float = Field(60, gt=0, description="the rate limit's window")
    exec_timeout_s: float = Field(10, gt=0, description="a run is killed (its whole process "
                                  "group) after this long")


class CoordinationOptions(BaseModel):
    """The ``coordination`` format (task-queue.json + worker-status.json): its own clock.
    The design heartbeats every 30-60 s and calls a worker dead after 120 s."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_after_s: float = Field(120, gt=0, description="newest heartbeat older than this: "
                                "the worker is dead and its claim a zombie")
    stale_after_s: float = Field(60, gt=0, description="newest heartbeat older than this: "
                                 "the worker is at risk")
    lock_timeout_s: float = Field(10, gt=0, description="wait at most this long for the "
                                  "queue's lock (task-queue.json.lock) before refusing")
    max_queue_bytes: int = Field(512 * 1024 * 1024, ge=4096,
                                 description="task-queue.json larger than this is refused")
    comms_tail_bytes: int = Field(8 * 1024 * 1024, ge=4096,
                                  description="read at most this tail of agent-comms.jsonl")
    comms_per_task: int = Field(20, ge=0, description="comms-log lines kept per task trace")


class TaskApiOptions(BaseModel):
    """The ``taskapi`` format (a ``tasks`` table behind an HTTP task API, SQLite or
    PostgreSQL): its clock, the system's own (comic-pile a28e4ef8: ``/stale`` is an
    in_progress claim silent for 20 minutes), its PostgreSQL reads, and its write path
    (interventions go through the queue's own HTTP task API; direct SQL writes only with
    ``--direct-db``)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    # reading
    zombie_after_s: float = Field(1200, gt=0, description="an in_progress claim with no sign "
                                  "of life (claim or later heartbeat) for this long: zombie")
    stale_after_s: float = Field(600, gt=0, description="silent this long: at risk "
                                 "(stale_heartbeat)")
    connect_timeout_s: float = Field(5, gt=0, description="PostgreSQL: give up connecting "
                                     "after this long (the server is unreachable)")
    statement_timeout_s: float = Field(60, gt=0, description="PostgreSQL: a read that takes "
                                       "longer is cancelled (the server is stuck)")
    # writing
    api_url: str | None = Field(None, description="the task API's base URL (the app that "
                                "serves /api/tasks/), e.g. http://127.0.0.1:8000; --api "
                                "overrides it; unset: read-only unless --direct-db")
    admin_name: str = Field("admin", min_length=1, description="the agent name the API lets "
                            "unclaim any task (release, retry)")
    timeout_s: float = Field(10, gt=0, le=300, description="one HTTP call's timeout (and "
                             "a PostgreSQL statement's, with --direct-db)")
    worktree_base: str | None = Field(None, description="the directory a task's worktree "
                                      "name is relative to, for an accept's verify (unset: "
                                      "the parent of the DB's directory, as the API has it)")
    journal_dir: str | None = Field(None, description="where qwarden journals the "
                                    "interventions on a PostgreSQL root (a DB file's journal "
                                    "is beside it, in DB.qwarden/; unset: "
                                    "$XDG_STATE_HOME/qwarden/taskapi/HOST-PORT-DB)")
    subtask_effort: str = Field("1 hour", min_length=1, description="estimated_effort of a "
                                "split's subtasks when the parent has none")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: Thresholds = Thresholds()
    coordination: CoordinationOptions = CoordinationOptions()
    taskapi: TaskApiOptions = TaskApiOptions()
    limits: Limits = Limits()
    live: LiveOptions = LiveOptions()
    alerts: AlertOptions = AlertOptions()
    read_only: bool = False
    theme: str | None = None
    # binding id -> key(s), applied with App.set_keymap (the TUI's business)
    keys: dict[str, str] = Field(default_factory=dict)
    # interventions (issue 4) read their own table from here
    actions: dict[str, object] = Field(default_factory=dict)


class ConfigError(Exception):
    """A config file exists but cannot be used; the message names the file."""


def config_candidates(root: Path | None) -> list[Path]:
    paths: list[Path] = []
    if root is not None:
        paths.append(root.parent / "qwarden.toml")
        paths.append(root / "qwarden.toml")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    try:
        base = Path(xdg) if xdg else Path.home() / ".config"
    except RuntimeError:  # no HOME and no passwd entry: there is no user config
        return paths
    paths.append(base / "qwarden" / "config.toml")
    return paths


CONFIG_MAX_BYTES = 1024 * 1024


def _visible(path: Path) -> bool:
    """Can we tell that this file exists? (Not when a directory above it is unreadable.)"""
    try:
        os.lstat(path)
    except OSError:
        return False
    return True


def load_config(root: Path | None = None,
                explicit: Path | None = None) -> tuple[Config, Path | None]:
    """Return the config and the file it came from (None: built-in defaults)."""
    candidates = [explicit] if explicit is not None else config_candidates(root)
    for path in candidates:
        try:
            data, _ = read_whole(path, CONFIG_MAX_BYTES)  # a FIFO or /dev/zero: refused
        except FileNotFoundError:
            if explicit is not None:
                raise ConfigError(f"{path}: config file not found") from None
            continue
        except OSError as exc:
            if explicit is None and not _visible(path):
                continue  # an optional path we cannot even look at (HOME unreadable)
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
        try:
            parsed = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        try:
            return Config.model_validate(parsed), path
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    return Config(), None
