"""What a queue format's states and events mean, in terms the core understands.

Liveness, the judge, the rules and the console read a ``Semantics`` instead of a format's
literals (Octopoid's ``claimed`` lane, RALF's ``in_progress`` entry, a task API's
``in_review``). Each format package defines one, beside its source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# A check result whose status is one of these passed (compared lower-case). One definition:
# the unverified_completion rule and the accept guard both read it through Semantics.
PASSING_CHECK_STATUSES = frozenset({"pass", "passed", "success", "succeeded", "ok", "green"})

EMPTY: frozenset[str] = frozenset()


def _no_rename() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Semantics:
    """A format's meaning. States are the effective states a verdict can hold (the lanes)."""

    format: str
    lanes: tuple[str, ...]
    initial_state: str  # where a task with no record and no file sits (a new task)
    claimed_states: frozenset[str]  # a claim in these is judged for liveness
    terminal: frozenset[str]  # nobody will work on it again without an intervention
    runnable: frozenset[str]  # waiting for or under work: a stale error here matters
    stuck: frozenset[str]  # a dependency in these blocks its dependents for good
    unread: frozenset[str]  # finished states an operator should read soon
    done_states: frozenset[str]  # finished successfully
    failed_states: frozenset[str]  # finished with a failure (repeated_failure's input)
    escalated_states: frozenset[str] = EMPTY
    submitted_states: frozenset[str] = EMPTY  # claims of completion that need verification
    review_states: frozenset[str] = EMPTY  # submitted, waiting for an accept
    # The trail: which event leaves the task in which state, which start a claim, ...
    event_states: Mapping[str, str] = field(default_factory=_no_rename)
    claim_events: frozenset[str] = EMPTY
    failure_events: frozenset[str] = EMPTY
    retry_events: frozenset[str] = EMPTY
    recycle_events: frozenset[str] = EMPTY  # trips back to waiting (recycling_task counts them)
    submit_events: frozenset[str] = EMPTY
    # record state -> the file places that agree with it (missing: the state's own name)
    expected_dirs: Mapping[str, frozenset[str]] = field(default_factory=_no_rename)
    # a file's place -> the state it shows (missing: the place's own name, as in Octopoid)
    file_states: Mapping[str, str] = field(default_factory=_no_rename)
    # False when the files are instructions only (their place says nothing of the state):
    # the record alone decides, and no file-versus-record mismatch exists
    files_carry_state: bool = True
    # True when the file's place is the truth (RALF: "the directory, not the queue, says"):
    # where the two sides disagree the file's state wins, whichever changed last
    file_decides: bool = False
    # The generic rules (core/rules/registry.py) that fit this format, by name; None: all.
    # A format whose kinds are its own (RALF) lists the few that apply, or none.
    generic_rules: frozenset[str] | None = None
    passing_check_statuses: frozenset[str] = PASSING_CHECK_STATUSES
    # Generic finding kinds under this format's own name (RALF calls an orphan file
    # ``missing_from_queue``): the rules are written once, the names are the format's.
    kind_names: Mapping[str, str] = field(default_factory=_no_rename)
    # Kinds only this format has, with the rules that find them (pure functions like every
    # rule: see core.rules.base). Task rules run per judged task, subject rules once per
    # judgement over the whole snapshot (findings about the queue itself or an agent).
    task_rules: tuple[tuple[str, Callable[..., Iterable[Any]]], ...] = ()
    subject_rules: tuple[tuple[str, Callable[..., Iterable[Any]]], ...] = ()
    extra_scored_kinds: frozenset[str] = EMPTY
    # The format's own clock: ``Thresholds`` fields it sets for its tasks, over the config's
    # (a coordination worker is dead after 120 s of silence, an Octopoid agent after an hour).
    thresholds: Mapping[str, float] = field(default_factory=_no_rename)  # type: ignore[arg-type]
    # What the operator types for a recommended action ({id}: the task, {root}: --root),
    # and where a kind's action is carried out by another command than the action's own.
    # Empty: the format has no interventions (the report names none).
    action_hints: Mapping[str, str] = field(default_factory=_no_rename)
    kind_hints: Mapping[str, str] = field(default_factory=_no_rename)
    # How a task id is shown: Octopoid's ids are bare hex ("TASK-" is shown before them);
    # RALF's, the coordination files' and a task API's carry their own prefix. ``id_width``:
    # the id column of the lane list (a longer id is cut with an ellipsis).
    id_prefix: str = ""
    id_width: int = 14
    # What the two sides of a task are called on screen (Octopoid: the DB row and the task
    # file; RALF: the queue.yaml entry and the task directory)
    record_label: str = "record"
    file_label: str = "file"

    def own_thresholds(self, base: Any) -> Any:
        """``base`` (a ``Thresholds``) with this format's fields set over it."""
        return base.model_copy(update=dict(self.thresholds)) if self.thresholds else base

    def task_label(self, task_id: str) -> str:
        return self.id_prefix + task_id

    def kind(self, generic: str) -> str:
        return self.kind_names.get(generic, generic)

    def expected_places(self, state: str) -> frozenset[str]:
        return self.expected_dirs.get(state, frozenset({state}))

    def file_state(self, place: str) -> str:
        return self.file_states.get(place, place)

    def check_passed(self, status: str) -> bool:
        return status.lower() in self.passing_check_statuses
