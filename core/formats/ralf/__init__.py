"""RALF (BlackBox5's ``.autonomous/``): a YAML queue, an event log, heartbeats and task dirs.

``FORMAT_INFO`` is what the registry (``core.formats``) lists; the rest of the package:
``layout`` (finding the files, both layouts), ``parse`` (line-numbered readers), ``source``
(the ``Source``), ``semantics`` and ``rules`` (RALF's kinds), ``sync`` (``qwarden sync``),
``demo`` (generator and live simulation), ``judge`` (the engine-free judging path).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.formats.ralf.layout import detect
from core.sources.base import FormatInfo

if TYPE_CHECKING:
    from core.config import Config


def open_source(root: Path | str, config: Config | None = None, live: bool = False,
                follow: bool = False) -> Any:
    from core.formats.ralf.source import RalfSource

    return RalfSource(root, config, live, follow)


FORMAT_INFO = FormatInfo(
    name="ralf", detect=detect, open=open_source,
    describe="RALF / BlackBox5 .autonomous/ (queue.yaml, events.yaml, heartbeat.yaml, tasks/)")
