"""The task-file reader: real Octopoid layouts, and fuzzing (it must never raise)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwarden.core.formats.octopoid.reader import parse_json_object
from qwarden.core.formats.octopoid.taskfile import parse_task_bytes

BASE = """# [TASK-abc12345] Wire up settings page

ROLE: implement
PRIORITY: P1
BRANCH: main
CREATED: 2026-11-22T22:00:38.642857
CREATED_BY: human
BLOCKED_BY: 560fa4b0

## Context
Some context. NOTE: not a trail key.
FAILED_AT: this is prose inside context? no - outside fences it would count

## Acceptance Criteria
- [ ] It works
"""


def parse(text: str, **kw):  # type: ignore[no-untyped-def]
    data = text.encode()
    return parse_task_bytes(data, "abc12345", "incoming",
                            0.0, len(data), **kw)


def test_header_and_trail_events_in_order() -> None:
    tf = parse(BASE.replace("FAILED_AT: this is prose inside context? no - outside fences it "
                            "would count\n", "") + """
CLAIMED_BY: impl-agent-3
CLAIMED_AT: 2026-11-22T22:00:38.651647

FAILED_AT: 2026-11-22T22:00:38.659316

## Error
```
Claude invocation failed with exit code 1
FAILED_AT: inside a fence is not a trail line
Traceback: boom
```

RETRIED_AT: 2026-11-22T22:00:38.662295
""")
    assert tf.parseable and tf.title == "Wire up settings page"
    assert tf.header["PRIORITY"] == "P1" and tf.header["BLOCKED_BY"] == "560fa4b0"
    assert [e.kind for e in tf.trail] == ["CLAIMED", "FAILED", "RETRIED"]
    assert tf.trail[0].actor == "impl-agent-3"
    assert len(tf.errors) == 1 and not tf.errors[0].in_history
    assert tf.errors[0].text.startswith("Claude invocation failed")
    assert "Traceback: boom" in tf.errors[0].text


def test_review_rejection_notice_is_placed_in_time_order() -> None:
    text = BASE.replace("## Context", """## Rejection Notice (rejection #1)
REVIEW_REJECTED_AT: 2026-11-22T23:00:00
REVIEW_REJECTED_BY: reviewer

## Context""") + """
CLAIMED_BY: a
CLAIMED_AT: 2026-11-22T22:00:00

SUBMITTED_AT: 2026-11-22T22:30:00
COMMITS_COUNT: 2
TURNS_USED: 10
"""
    tf = parse(text)
    kinds = [e.kind for e in tf.trail if e.kind in ("CLAIMED", "SUBMITTED", "REVIEW_REJECTED")]
    assert kinds == ["CLAIMED", "SUBMITTED", "REVIEW_REJECTED"]
    assert tf.trail[-1].actor == "reviewer"


def test_error_under_history_heading_is_not_live() -> None:
    text = BASE + """
## History
FAILED_AT: 2026-11-22T22:00:38

## Error
```
old
```

RETRIED_AT: 2026-11-22T22:10:00
"""
    tf = parse(text)
    assert tf.errors and tf.errors[0].in_history


def test_stub_corrupt_and_foreign_header() -> None:
    stub = parse("\nACCEPTED_AT: 2026-11-22T22:00:38.588627\nACCEPTED_BY: recycler\n")
    assert stub.is_stub and not stub.parseable and stub.trail[0].kind == "ACCEPTED"
    binary = parse_task_bytes(b"\x00\x01garbage\xff\xfe", "abc12345", "incoming", 0, 9)
    assert not binary.parseable and not binary.is_stub and "binary" in binary.problem
    latin = parse_task_bytes("# [TASK-abc12345] caf\xe9".encode("latin-1"), "abc12345",
                             "incoming", 0, 20)
    assert not latin.parseable and "UTF-8" in latin.problem
    other = parse("# [TASK-ffffffff] someone else's header\n")
    assert not other.parseable and "TASK-ffffffff" in other.problem
    assert not parse("").parseable and parse("").problem == "empty file"


def test_truncated_file_keeps_its_trail_from_the_tail() -> None:
    body = BASE + ("x" * 100 + "\n") * 5000
    trail = "\nCLAIMED_BY: a\nCLAIMED_AT: 2026-11-22T22:00:00\n"
    data = (body + trail).encode()
    head, tail = data[:4096], data[-2048:]
    tf = parse_task_bytes(head, "abc12345", "incoming", 0, len(data), truncated=True,
                          tail=tail)
    assert tf.parseable and tf.truncated
    assert tf.trail and tf.trail[-1].kind == "CLAIMED"


KEYS = st.sampled_from(["CLAIMED_BY", "CLAIMED_AT", "FAILED_AT", "RETRIED_AT", "SUBMITTED_AT",
                        "COMMITS_COUNT", "NEEDS_CONTINUATION_AT", "ROLE", "PRIORITY",
                        "REVIEW_REJECTED_AT", "## Error", "## History", "```", "# [TASK-abc12345]"])
LINES = st.lists(st.one_of(
    st.tuples(KEYS, st.text(max_size=40)).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.text(max_size=60)), max_size=40)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(LINES)
def test_fuzz_structured_lines_never_raise(lines: list[str]) -> None:
    tf = parse("\n".join(lines))
    assert tf.task_id == "abc12345"
    for e in tf.trail:
        assert e.kind


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.booleans(), st.binary(max_size=256))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes, truncated: bool, tail: bytes) -> None:
    tf = parse_task_bytes(data, "abc12345", "incoming", 0.0, len(data), truncated, tail)
    assert tf.parseable or tf.problem


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=512),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.text(max_size=8), c, max_size=4))
                 .map(lambda o: __import__("json").dumps(o).encode())))
def test_fuzz_json_reader_never_raises(data: bytes) -> None:
    problems: list = []
    obj = parse_json_object(data, "agents/x/state.json", problems)
    assert isinstance(obj, dict)
    assert obj or problems or data.strip() == b"{}"


def test_a_failure_after_the_history_section_is_live_again() -> None:
    text = BASE + """
CLAIMED_BY: a
CLAIMED_AT: 2026-11-22T21:00:00

## History
FAILED_AT: 2026-11-22T21:10:00

## Error
```
first failure
```
<!-- /History -->

RETRIED_AT: 2026-11-22T21:20:00

CLAIMED_BY: b
CLAIMED_AT: 2026-11-22T21:30:00

FAILED_AT: 2026-11-22T21:40:00

## Error
```
second failure
```
"""
    tf = parse(text)
    assert [e.in_history for e in tf.errors] == [True, False]
    assert tf.errors[1].text == "second failure"


def test_stub_with_an_appended_error_block_is_a_stub() -> None:
    fail_stub = parse("\nFAILED_AT: 2026-11-22T22:00:00\n\n## Error\n```\nTraceback\nboom\n```\n")
    assert fail_stub.is_stub and fail_stub.trail[0].kind == "FAILED"
    notice = parse("## Rejection Notice (rejection #2)\nREVIEW_REJECTED_AT: 2026-11-22T22:00:00"
                   "\nREVIEW_REJECTED_BY: reviewer\n\n## Rejection Details\nTests fail.\n")
    assert notice.is_stub
    prose = parse("Some notes someone wrote\nFAILED_AT: 2026-11-22T22:00:00\n")
    assert not prose.is_stub and not prose.parseable


HEADER_LINES = st.lists(st.one_of(
    st.tuples(st.sampled_from(["ROLE", "PRIORITY", "CREATED", "BRANCH", "PROJECT", "BLOCKED_BY",
                               "CLAIMED_BY", "SUBMITTED_AT", "NOTE", "ROLE"]),
              st.text(max_size=80)).map(lambda kv: f"{kv[0]}:{kv[1]}"),
    st.sampled_from(["## Context", "## Acceptance Criteria", "", "```"]),
    st.text(max_size=60)), max_size=25)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80), HEADER_LINES)
def test_the_header_only_path_reads_what_the_full_parse_reads(title: str, lines: list[str]) -> None:
    """The quick path (no trail marker in the bytes) gives the full parse's header and title;
    only the trail is left out (``trail_complete`` False)."""
    data = "\n".join([f"# [TASK-abc12345] {title}", *lines]).encode("utf-8", "replace")
    full = parse_task_bytes(data, "abc12345", "incoming", 0.0, len(data))
    quick = parse_task_bytes(data, "abc12345", "incoming", 0.0, len(data), full=False)
    if not quick.trail_complete:  # the quick path was taken
        assert (quick.parseable, quick.is_stub, quick.title, dict(quick.header)) == \
            (full.parseable, full.is_stub, full.title, dict(full.header))
        assert list(quick.header) == list(full.header) and not quick.trail
    else:
        assert quick == full
