"""Helpers of the task API tests: the shared sample, copies, the judged kinds, file trees."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

from qwarden.core.formats import judge_once, kinds_by_subject
from qwarden.core.timefmt import parse_as_of

TASKAPI_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "taskapi-sample"


def copy_sample(dst_dir: Path) -> Path:
    """The sample DB copied (writable, like a user's own) into ``dst_dir``."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / "comic_pile.db"
    shutil.copyfile(TASKAPI_SAMPLE / "comic_pile.db", dst)
    os.chmod(dst, 0o644)
    return dst


def sample_truth() -> dict:
    return json.loads((TASKAPI_SAMPLE / "truth.json").read_text())


def judged(root: Path | str, as_of: datetime | str) -> dict[str, set[str]]:
    at = parse_as_of(as_of) if isinstance(as_of, str) else as_of
    findings, _ = judge_once(root, at, fmt="taskapi")
    return kinds_by_subject(findings)


def want(truth: dict) -> dict[str, set[str]]:
    return {t: set(k) for t, k in truth["tasks"].items() if k}


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in the directory with its bytes and mtime (reading must change neither,
    and create no -wal, -shm or -journal beside the DB)."""
    out = {}
    for dp, _dn, fn in os.walk(root):
        for f in fn:
            p = Path(dp) / f
            out[str(p.relative_to(root))] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out
