"""The installed import name is ``qwarden``: the top-level folders map to ``qwarden.core``,
``qwarden.tui`` and ``qwarden.themes``, and no module named ``core`` or ``tui`` is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_under_its_installed_name() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    on_disk = {"qwarden.themes"}
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert set(setuptools["packages"]) == on_disk


def test_installed_names_import_and_the_bare_folder_names_do_not(tmp_path: Path) -> None:
    code = ("import importlib.util as u, qwarden.core.cli, qwarden.tui.app\n"
            "from qwarden.tui.themes import STYLESHEET\n"
            "print(STYLESHEET.is_file(), u.find_spec('core'), u.find_spec('tui'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.stdout.split() == ["True", "None", "None"], out.stderr
