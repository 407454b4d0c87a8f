"""Retry policy as plain data (in the spirit of urllib3's ``Retry`` and Celery's task options).

The batch asks one question after a failed attempt - ``policy.decide(...)`` - and gets a
``Decision``: retry after a delay (maybe at a lower resolution tier) or give up with a
message. Keeping it data makes the behaviour easy to read, configure and test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

RESOLUTION_TIERS: tuple[int, ...] = (384, 512, 768, 1024)

#: HostError kinds (runner/host_errors.py) that are worth another attempt.
DEFAULT_RETRY_KINDS: frozenset[str] = frozenset(
    {
        "connection",
        "http_5xx",
        "socket",
        "restart",
        "timeout",
        "interrupted",
        "execution",
        "verify",
        "auth",
        "oom",
        "storage",
    }
)


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt."""

    retry: bool
    delay: float = 0.0
    resolution: int | None = None  # the resolution for the next attempt (changed only by OOM)
    message: str = ""  # why the job is dead (retry=False) or a note about the retry
    note: str | None = None  # recorded in the job's notes (e.g. "OOM at 768 -> retry at 512")


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, how long to wait between them, and which failures retry.

    backoff: "full jitter" - a uniform delay in [0, min(cap, base * 2**(n-1))] after the
    n-th failure, which spreads retries of many jobs that failed together.
    """

    max_attempts: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    retry_kinds: frozenset[str] = field(default=DEFAULT_RETRY_KINDS)
    tiers: tuple[int, ...] = RESOLUTION_TIERS

    def backoff(self, failures: int, rng: random.Random | None = None) -> float:
        """Delay before the attempt that follows the ``failures``-th failure (>= 1)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** max(0, failures - 1)))
        return (rng or random).uniform(0.0, ceiling)

    def lower_tier(self, resolution: int) -> int | None:
        lower = [t for t in self.tiers if t < resolution]
        return lower[-1] if lower else None

    def decide(
        self,
        *,
        attempts: int,
        kind: str,
        retryable: bool,
        message: str,
        resolution: int | None,
        rng: random.Random | None = None,
    ) -> Decision:
        """Decide after attempt number ``attempts`` failed with an error of ``kind``."""
        if not retryable or kind not in self.retry_kinds:
            return Decision(False, message=message)
        if attempts >= self.max_attempts:
            return Decision(False, message=f"gave up after {attempts} attempts; last error: {message}")
        delay = self.backoff(attempts, rng)
        if kind == "oom":
            if resolution is None:
                return Decision(
                    False,
                    message=f"out of memory and the workflow sets no min_resolution to lower: {message}",
                )
            lower = self.lower_tier(resolution)
            if lower is None:
                return Decision(
                    False,
                    message=(
                        f"out of memory at min_resolution={resolution} and no lower tier is left "
                        f"({'/'.join(map(str, self.tiers))}); use a host with more GPU memory: {message}"
                    ),
                )
            note = f"out of memory at min_resolution={resolution}; retrying at {lower}"
            return Decision(True, delay=delay, resolution=lower, message=note, note=note)
        return Decision(True, delay=delay, resolution=resolution, message=message)
