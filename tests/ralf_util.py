"""Helpers of the RALF tests: the shared sample copied to a writable tmp dir, tree bytes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

RALF_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ralf-sample"


def copy_sample(dst: Path) -> Path:
    """A writable copy of the sample (the shared one is read-only and never read in place)."""
    shutil.copytree(RALF_SAMPLE, dst, symlinks=True)
    for dp, _dn, fn in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fn:
            os.chmod(os.path.join(dp, f), 0o644)
    return dst


def tree(root: Path, skip: str = "warden") -> dict[str, tuple[bytes, int]]:
    """Every file under root (but qwarden's own dir) with its bytes and mtime."""
    out = {}
    for dp, dn, fn in os.walk(root):
        dn[:] = [d for d in dn if d != skip]
        for f in fn:
            p = Path(dp) / f
            out[str(p.relative_to(root))] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def tree_bytes(root: Path, skip: str = "warden") -> dict[str, bytes]:
    return {k: v[0] for k, v in tree(root, skip).items()}
