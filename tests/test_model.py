"""The immutable model: fast constructors keep dataclass semantics; the compact header."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from core.model import Action, Evidence, Finding, Header, Severity, TaskFile, fast_init


def test_fast_init_keeps_frozen_defaults_and_factories() -> None:
    t = TaskFile(task_id="a", queue="incoming", relpath="shared/queue/incoming/TASK-a.md",
                 mtime=1.0, size=2, parseable=True)
    assert t.header == {} and t.trail == () and t.trail_complete is True
    assert t == TaskFile("a", "incoming", "shared/queue/incoming/TASK-a.md", 1.0, 2, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.size = 3  # type: ignore[misc]
    assert dataclasses.replace(t, size=5).size == 5
    assert pickle.loads(pickle.dumps(t)) == t
    with pytest.raises(TypeError):
        TaskFile(task_id="a")  # type: ignore[call-arg]
    f = Finding(kind="k", task_id="a", severity=Severity.INFO, summary="s",
                evidence=(Evidence("fact", "v"),), recommended_action=Action.REVIEW)
    assert f.newer_side is None and f.scored is True and hash(f) == hash(dataclasses.replace(f))


def test_fast_init_refuses_what_it_cannot_copy() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithPost:
        x: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        fast_init(WithPost)


def test_header_is_a_read_only_mapping_sharing_key_tuples() -> None:
    a = Header({"ROLE": "implement", "PRIORITY": "P1"})
    b = Header({"ROLE": "review", "PRIORITY": "P2"})
    assert a._keys is b._keys  # one key tuple for every header with the same keys
    assert a["ROLE"] == "implement" and a.get("PRIORITY") == "P1" and a.get("X", "-") == "-"
    assert "ROLE" in a and "X" not in a and list(a) == ["ROLE", "PRIORITY"] and len(a) == 2
    assert a == {"ROLE": "implement", "PRIORITY": "P1"} and a != b
    assert dict(a) == {"ROLE": "implement", "PRIORITY": "P1"}
    with pytest.raises(KeyError):
        a["X"]
    with pytest.raises(TypeError):
        a["ROLE"] = "x"  # type: ignore[index]
