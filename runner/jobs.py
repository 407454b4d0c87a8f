"""The job model: one row of a batch, its states, and which state changes are allowed.

The allowed transitions are data (``TRANSITIONS``) so the journal, the batch and the
tests all agree on one table, and an impossible change (e.g. ``done`` -> ``running``)
is caught the moment code tries it instead of silently corrupting a resume.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

QUEUED = "queued"
UPLOADING = "uploading"
SUBMITTED = "submitted"
RUNNING = "running"
FETCHING = "fetching"
DONE = "done"
FAILED = "failed"
DEAD = "dead"

STATES: tuple[str, ...] = (QUEUED, UPLOADING, SUBMITTED, RUNNING, FETCHING, DONE, FAILED, DEAD)

#: state -> states it may move to. ``failed`` is "retryable, waiting for its backoff";
#: ``queued`` is reachable from in-flight states only through a resume/failover that
#: confirmed the host no longer has the attempt (it never ran, or the host lost it).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({UPLOADING, DEAD}),
    UPLOADING: frozenset({SUBMITTED, QUEUED, FAILED, DEAD}),
    SUBMITTED: frozenset({RUNNING, FETCHING, QUEUED, FAILED, DEAD}),
    RUNNING: frozenset({FETCHING, QUEUED, FAILED, DEAD}),
    FETCHING: frozenset({DONE, QUEUED, FAILED, DEAD}),
    FAILED: frozenset({QUEUED, DEAD}),
    DONE: frozenset(),
    DEAD: frozenset(),
}

#: States in which an attempt may exist on a host (it was or may have been POSTed).
ON_HOST_STATES: frozenset[str] = frozenset({SUBMITTED, RUNNING, FETCHING})
#: States that hold a slot of a host.
IN_FLIGHT_STATES: frozenset[str] = frozenset({UPLOADING, SUBMITTED, RUNNING, FETCHING})
FINAL_STATES: frozenset[str] = frozenset({DONE, DEAD})

PRIORITIES: dict[str, int] = {"P0": 0, "P1": 1, "P2": 2}


class InvalidTransition(RuntimeError):
    """A state change the job model forbids (a bug in the caller, never user input)."""


def check_transition(job_id: str, old: str, new: str) -> None:
    """Raise InvalidTransition unless ``old -> new`` is in ``TRANSITIONS``."""
    if new not in TRANSITIONS.get(old, frozenset()):
        raise InvalidTransition(f"job {job_id}: {old} -> {new} is not an allowed transition")


def parse_priority(value: object) -> int:
    """'P0'/'p1'/0/'2'/'' -> 0..2 (default P1); anything else is a one-line error."""
    if value is None or value == "":
        return 1
    text = str(value).strip().upper()
    if text in PRIORITIES:
        return PRIORITIES[text]
    if text in {"0", "1", "2"}:
        return int(text)
    raise ValueError(f"priority {value!r} is not one of P0, P1, P2")


@dataclass
class JobRecord:
    """Everything the runner knows about one job; mirrored row for row in the journal."""

    job_id: str
    row: int
    priority: int = 1
    spec: dict = field(default_factory=dict)
    state: str = QUEUED
    attempts: int = 0
    host: str | None = None
    prompt_id: str | None = None
    resolution: int | None = None
    error: str | None = None
    error_kind: str | None = None
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    queued_seconds: float = 0.0
    run_seconds: float = 0.0
    download_seconds: float = 0.0
    next_attempt_at: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        return asdict(self)
