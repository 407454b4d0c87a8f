"""Job-time models per tier: a distribution of GPU seconds per 10 s of audio, a tail, an OOM rate.

One spelling serves the simulator (``sonic-runner plan --tier ...``) and the fake ComfyUI hosts
of the load test (``--job-times``), so a simulated fleet and a measured one run on the same
numbers::

    balanced=uniform:40:60            seconds per 10 s clip, uniform between 40 and 60
    hq=lognormal:90:0.25+tail:0.02:3  median 90 s, sigma 0.25; 2% of jobs take 3x as long
    fast=exp:30+oom:0.1               exponential, mean 30 s; 10% of attempts end out of memory
    fast=fixed:35

Until GPU numbers from ``benchmarks/bench_sonic.py`` exist the default is the seeds' figure,
40-60 s per 10 s clip on an A100, for every tier.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

TIERS = ("fast", "balanced", "hq")
#: The seeds' A100 figure: 40-60 s of GPU time per 10 s clip.
SEED_SPEC = "uniform:40:60"
_DISTS = {"fixed": 1, "uniform": 2, "exp": 1, "lognormal": 2}


class JobTimeError(ValueError):
    """A job-time spec that cannot be read; the message names it and shows the form."""


@dataclass(frozen=True)
class TierModel:
    """How long one attempt of a tier takes, and how often it runs out of memory."""

    dist: str = "uniform"
    a: float = 40.0
    b: float = 60.0
    tail_p: float = 0.0
    tail_x: float = 1.0
    oom_p: float = 0.0

    def sample(self, rng: random.Random, audio_s: float = 10.0) -> float:
        """Seconds for one attempt on a clip of ``audio_s`` seconds (job time scales with length)."""
        if self.dist == "fixed":
            base = self.a
        elif self.dist == "uniform":
            base = rng.uniform(self.a, self.b)
        elif self.dist == "exp":
            base = rng.expovariate(1.0 / self.a)
        else:  # lognormal: a = median, b = sigma
            base = self.a * math.exp(rng.gauss(0.0, self.b))
        if self.tail_p and rng.random() < self.tail_p:
            base *= self.tail_x
        return base * audio_s / 10.0

    def mean(self, audio_s: float = 10.0) -> float:
        """Expected seconds per attempt (for lower bounds on the host count)."""
        if self.dist in ("fixed", "exp"):
            base = self.a
        elif self.dist == "uniform":
            base = (self.a + self.b) / 2
        else:
            base = self.a * math.exp(self.b**2 / 2)
        return base * (1 + self.tail_p * (self.tail_x - 1)) * audio_s / 10.0


def parse_model(text: str) -> TierModel:
    """``DIST:ARGS[+tail:P:X][+oom:P]`` -> TierModel (see the module docstring)."""
    form = "e.g. uniform:40:60+tail:0.02:3+oom:0.1"
    parts = [p.strip() for p in text.split("+") if p.strip()]
    if not parts:
        raise JobTimeError(f"job time {text!r} is empty; {form}")
    try:
        head = parts[0].split(":")
        dist, args = head[0], [float(x) for x in head[1:]]
        if dist not in _DISTS or len(args) != _DISTS[dist]:
            raise JobTimeError(
                f"job time {text!r}: the distribution is one of fixed:S, uniform:LO:HI, exp:MEAN, "
                f"lognormal:MEDIAN:SIGMA; {form}"
            )
        if any(x < 0 for x in args) or (dist == "uniform" and args[1] < args[0]):
            raise JobTimeError(f"job time {text!r}: seconds must be >= 0 and LO <= HI; {form}")
        extra: dict[str, float] = {}
        for part in parts[1:]:
            name, *vals = part.split(":")
            if name == "tail" and len(vals) == 2:
                extra.update(tail_p=float(vals[0]), tail_x=float(vals[1]))
            elif name == "oom" and len(vals) == 1:
                extra["oom_p"] = float(vals[0])
            else:
                raise JobTimeError(f"job time {text!r}: {part!r} is not tail:P:X or oom:P; {form}")
    except ValueError as exc:
        if isinstance(exc, JobTimeError):
            raise
        raise JobTimeError(f"job time {text!r}: numbers expected; {form}") from None
    for key in ("tail_p", "oom_p"):
        if not 0 <= extra.get(key, 0.0) <= 1:
            raise JobTimeError(f"job time {text!r}: {key.split('_')[0]} probability must be 0..1")
    b = args[1] if len(args) > 1 else args[0]
    return TierModel(dist=dist, a=args[0], b=b, **extra)


def parse_tiers(specs: list[str] | None, default: str = SEED_SPEC) -> dict[str, TierModel]:
    """``["hq=lognormal:90:0.3", "*=uniform:40:60"]`` -> a model for every tier (``*`` = the rest)."""
    given: dict[str, TierModel] = {}
    fallback = parse_model(default)
    for spec in specs or []:
        tier, sep, body = spec.partition("=")
        tier = tier.strip()
        if not sep or (tier not in TIERS and tier != "*"):
            raise JobTimeError(
                f"--tier {spec!r}: write TIER=SPEC with TIER one of {', '.join(TIERS)} or *, "
                "e.g. hq=uniform:80:120"
            )
        if tier == "*":
            fallback = parse_model(body)
        else:
            given[tier] = parse_model(body)
    return {tier: given.get(tier, fallback) for tier in TIERS}
