"""The immutable model: records are frozen msgspec Structs; the compact header."""

from __future__ import annotations

import gc
import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwarden.core.model import (
    Action,
    Evidence,
    Finding,
    Header,
    Layered,
    Publisher,
    Record,
    Severity,
    Task,
    TaskFile,
)


def test_records_are_frozen_structs_with_defaults_and_factories() -> None:
    t = TaskFile(task_id="a", queue="incoming", mtime=1.0, size=2, parseable=True)
    assert t.header == {} and t.trail == () and t.trail_complete is True
    assert t.relpath == "shared/queue/incoming/TASK-a.md"
    assert t == TaskFile("a", "incoming", 1.0, 2, True) and t != TaskFile("a", "done", 1.0, 2, True)
    assert TaskFile("a", "incoming", 1.0, 2, True).header is not t.header  # a fresh factory value
    with pytest.raises(AttributeError):
        t.size = 3  # type: ignore[misc]
    assert msgspec.structs.replace(t, size=5).size == 5 and t.size == 2
    assert pickle.loads(pickle.dumps(t)) == t
    with pytest.raises(TypeError):
        TaskFile(task_id="a")  # type: ignore[call-arg]
    f = Finding(kind="k", task_id="a", severity=Severity.INFO, summary="s",
                evidence=(Evidence("fact", "v"),), recommended_action=Action.REVIEW)
    assert f.newer_side is None and f.scored is True
    assert hash(f) == hash(msgspec.structs.replace(f)) and {f, msgspec.structs.replace(f)} == {f}
    assert isinstance(f, Record) and not gc.is_tracked(f)  # values only: never in a cycle


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


@given(st.lists(st.tuples(st.sampled_from(["set", "del", "publish"]),
                          st.integers(0, 40), st.integers()), max_size=300),
       st.sampled_from([2, 8, 2048]))
@settings(max_examples=200, deadline=None)
def test_publisher_snapshots_equal_copies_and_never_change(ops: list[tuple[str, int, int]],
                                                           min_delta: int) -> None:
    """Every published Layered equals a plain copy of the source at that moment, and stays
    equal to it whatever the source does afterwards."""
    src: dict[str, int] = {f"k{i}": i for i in range(10)}
    pub = Publisher(lambda: src, min_delta)  # small: the base is recopied now and then
    published: list[tuple[Layered, dict[str, int]]] = [(pub.publish(), dict(src))]
    for op, k, v in ops:
        key = f"k{k}"
        if op == "set":
            src[key] = v
            pub.touch(key)
        elif op == "del" and key in src:
            del src[key]
            pub.touch(key)
        elif op == "publish":
            published.append((pub.publish(), dict(src)))
    published.append((pub.publish(), dict(src)))
    for snap, want in published:
        assert dict(snap) == want and len(snap) == len(want)
        assert dict(snap.items()) == want and sorted(snap.values()) == sorted(want.values())
        for i in range(41):
            key = f"k{i}"
            assert (key in snap) == (key in want)
            assert snap.get(key) == want.get(key)
            if key not in want:
                with pytest.raises(KeyError):
                    snap[key]


def test_publisher_copies_only_changes_until_they_outgrow_the_base() -> None:
    src = {f"k{i}": i for i in range(100_000)}
    pub = Publisher(lambda: src)
    first = pub.publish()
    src["k5"] = -5
    pub.touch("k5")
    second = pub.publish()
    assert second._base is first._base and second._delta == {"k5": -5}
    assert first["k5"] == 5 and second["k5"] == -5


def test_a_task_s_primary_file_follows_its_files() -> None:
    real = TaskFile("a", "incoming", 2.0, 10, True)
    stub = TaskFile("a", "done", 3.0, 5, True, is_stub=True)
    t = Task("a", None, (stub, real))
    assert t.primary_file is real and Task("a", None, ()).primary_file is None
    moved = msgspec.structs.replace(t, files=(msgspec.structs.replace(real, queue="done"),))
    assert moved.primary_file is not None and moved.primary_file.queue == "done"
    assert t == Task("a", None, (stub, real)) and not gc.is_tracked(t)
