"""Octopoid's state.db rows -> TaskRecords: the quick path (cells of the types Octopoid
writes) reads every row exactly as the general one does, whatever SQLite hands back."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qwarden.core.formats.octopoid.reader import _RECORD_COLS, COUNT_MAX, record_reader

TEXT = st.one_of(st.none(), st.just(""), st.sampled_from(["incoming", "P1", "impl-agent-1",
                                                         "TASK-abc", "2026-11-22 22:00:38",
                                                         "/q/.orchestrator/shared/queue/done/",
                                                         "a,TASK-b, c"]),
                 st.text(max_size=30))
COUNT = st.one_of(st.none(), st.integers(0, 50), st.sampled_from([-1, COUNT_MAX, COUNT_MAX + 1]))
ODD = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.binary(max_size=8),
                st.none(), st.text(max_size=10))


def cells(odd: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    """A row in _RECORD_COLS order: what Octopoid writes, or (``odd``) sometimes anything."""
    parts = []
    for col in _RECORD_COLS:
        usual = COUNT if col.endswith("_count") else TEXT
        if col == "id":
            usual = st.one_of(st.text(min_size=1, max_size=12),
                              st.text(max_size=8).map(lambda s: "TASK-" + s))
        if col == "file_path":
            usual = st.one_of(st.none(), st.just(""), st.text(max_size=8).map(
                lambda s: f"/q/shared/queue/{s}/TASK-{s}.md"), st.text(max_size=20))
        parts.append(st.one_of(usual, usual, usual, ODD) if odd else usual)
    return st.tuples(*parts)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(cells(False), cells(True)), min_size=1, max_size=6))
def test_the_quick_path_reads_every_row_as_the_general_one(rows: list[tuple[Any, ...]]) -> None:
    quick_bad: list[tuple[str, str, Any]] = []
    general_bad: list[tuple[str, str, Any]] = []
    quick, general = record_reader(quick_bad), record_reader(general_bad, quick=False)
    for row in rows:
        assert quick(row) == general(row)
    assert repr(quick_bad) == repr(general_bad)  # (repr: a NaN cell is not equal to itself)


def test_a_usual_row_takes_the_quick_path_and_shares_its_strings() -> None:
    row = ("TASK-abc", "incoming", "P1", "implement", None, "/q/shared/queue/incoming/TASK-abc.md",
           None, None, None, 0, 1, 0, None, None, None, None, "2026-11-22 22:00:38",
           "2026-11-22 22:00:38")
    read = record_reader([])
    # the same row again, every text a new string object
    a, b = read(row), read(tuple((c + ".")[:-1] if isinstance(c, str) else c for c in row))
    assert a is not None and a == b and a.task_id == "abc" and a.file_name is None
    assert a.file_dir is b.file_dir and a.updated_at_text is b.updated_at_text
    assert a.file_path == "/q/shared/queue/incoming/TASK-abc.md"
