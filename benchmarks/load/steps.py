"""The stepped ramp: ``"10:60,20:60,40:60"`` = 10 users for 60 s, then 20, then 40.

Plain Python (no Locust import), shared by the locustfile's LoadTestShape, the job log (which
step a submission belongs to) and the report (which samples fall in which step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    start_s: float  # from the start of the test
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


class StepError(ValueError):
    """A steps spec that cannot be read: the message names it and shows the form."""


def parse_steps(text: str) -> list[Step]:
    """``USERS:SECONDS[,USERS:SECONDS...]`` -> steps back to back from t = 0."""
    steps, t = [], 0.0
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        users, sep, seconds = part.partition(":")
        try:
            n, s = int(users), float(seconds)
        except ValueError:
            n, s = -1, -1.0
        if not sep or n < 1 or s <= 0:
            raise StepError(f"steps {text!r}: write USERS:SECONDS per step, e.g. 10:60,20:60,40:60")
        steps.append(Step(len(steps), n, t, t + s))
        t += s
    if not steps:
        raise StepError(f"steps {text!r}: give at least one USERS:SECONDS step, e.g. 10:60")
    return steps


def step_at(steps: list[Step], elapsed: float) -> Step | None:
    """The step running ``elapsed`` seconds into the test (None once the last has ended)."""
    for step in steps:
        if step.start_s <= elapsed < step.end_s:
            return step
    return None


def spawn_rate(steps: list[Step], step: Step, ramp_s: float = 2.0) -> float:
    """Users per second so each step reaches its count within ``ramp_s`` seconds."""
    before = steps[step.index - 1].users if step.index else 0
    return max(1.0, abs(step.users - before) / ramp_s)
