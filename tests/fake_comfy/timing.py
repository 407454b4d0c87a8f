"""TEST-ONLY job times for the fake host: per-tier distributions with a tail and an OOM rate.

The load test's hosts must take as long as GPU hosts would (scaled down), so the queue
behaves like a fleet's. The models are runner/capacity/jobtimes.py's (the simulator's), so a
simulated fleet and the measured one run on the same numbers::

    JobClock(["*=uniform:40:60", "hq=uniform:80:120+tail:0.02:3+oom:0.1"], scale=0.01)

A job's tier comes from its VideoEncode ``filename_prefix`` (the shipped templates write
``sonic/<backend>_<tier>``), else from its resolution; its length from SONIC_PreData's
``duration`` (0: 10 s). A job the runner moved down a resolution step after an OOM runs
faster by the pixel count, as in the simulator.
"""

from __future__ import annotations

import random
import threading

from comfyui_sonic.runner.capacity.jobtimes import TIERS, TierModel, parse_tiers
from comfyui_sonic.runner.capacity.simulate import TIER_RES

#: Fraction of an attempt's time spent before it runs out of memory (the simulator's oom_cost).
OOM_COST = 0.5


class JobClock:
    def __init__(self, specs: list[str] | None, scale: float = 1.0, seed: int | None = None) -> None:
        self.models: dict[str, TierModel] = parse_tiers(specs)
        self.scale = scale
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def plan(self, prompt: dict, oom_rate: float = 0.0) -> tuple[float, bool]:
        """(seconds, out of memory?) for one attempt of ``prompt``; ``oom_rate`` adds to the tier's."""
        tier, res, audio_s = describe(prompt)
        model = self.models[tier]
        with self._lock:
            seconds = model.sample(self._rng, audio_s) * self.scale
            oom = self._rng.random() < min(1.0, model.oom_p + oom_rate)
        seconds *= (res / TIER_RES[tier]) ** 2 if res else 1.0
        return (seconds * OOM_COST, True) if oom else (seconds, False)


def describe(prompt: dict) -> tuple[str, int | None, float]:
    """(tier, min_resolution, audio seconds) of an API-format prompt."""
    tier, res, audio_s = None, None, 10.0
    for node in prompt.values():
        inputs = node.get("inputs") or {}
        if node.get("class_type") == "SONIC_PreData":
            value = inputs.get("min_resolution")
            res = value if isinstance(value, int) else None
            duration = inputs.get("duration")
            if isinstance(duration, (int, float)) and duration > 0:
                audio_s = float(duration)
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str):
            tier = next((t for t in TIERS if prefix.endswith(t)), tier)
    if tier is None:
        tier = "hq" if res and res > 512 else "balanced"
    return tier, res, audio_s
