"""A discrete-event simulation of the fleet's queue: priority lanes, pools, retries, OOM, host failures.

It answers "with this arrival pattern and these hosts, how long do P0/P1/P2 jobs wait and how
busy are the hosts?" by replaying the fleet's rules on a clock instead of a GPU:

- one queue per resolution pool (512 / 768 / 1024); a host serves every pool up to its
  ``max_res``; an idle host takes the most urgent job at the head of its pools (priority,
  then the time it became ready). Celery round-robins between the queues a worker consumes;
  taking the best head across them is the policy the fleet aims at and the local scheduler uses;
- an attempt ends ok, out of memory (the job moves one resolution step down,
  1024 -> 768 -> 512 -> 384, and its time scales with the pixel count) or with a transient
  failure (ready again after an exponential backoff), at most ``max_attempts`` attempts;
- a host fails after an exponential time with mean ``mtbf_s`` and is back after ``mttr_s``;
  the job it was running is back in its queue after ``detect_s`` (the failover grace).

The wait of a job is from its arrival to the start of its first attempt (what the seeds' QoS
table bounds); ``total`` is arrival to the end of its last attempt.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .jobtimes import TIERS, TierModel, parse_tiers

#: The resolution of each tier's templates (README: fast/balanced at 512, hq at 768).
TIER_RES = {"fast": 512, "balanced": 512, "hq": 768}
#: The runner's OOM ladder (runner/retry.py): one step down per out-of-memory attempt.
RES_LADDER = (1024, 768, 512, 384)
DEFAULT_POOLS = (512, 768, 1024)


@dataclass(frozen=True)
class Arrival:
    """One job entering the queue. ``job_s`` fixes its attempt time (a measured trace)."""

    t: float
    priority: int = 1
    tier: str = "balanced"
    audio_s: float = 10.0
    job_s: float | None = None


@dataclass(frozen=True)
class HostClass:
    """``count`` identical hosts that render up to ``max_res``, ``speed`` times the tier model."""

    count: int
    max_res: int = 1024
    speed: float = 1.0


@dataclass
class FleetConfig:
    hosts: list[HostClass]
    tiers: dict[str, TierModel] = field(default_factory=lambda: parse_tiers(None))
    pools: Sequence[int] = DEFAULT_POOLS
    max_attempts: int = 3
    fail_p: float = 0.0  # transient failure per attempt (connection lost, HTTP 5xx)
    fail_cost: float = 0.5  # fraction of the attempt's time spent before a transient failure
    oom_cost: float = 0.5  # fraction spent before running out of memory
    backoff_s: float = 5.0  # first retry delay; doubles per attempt
    mtbf_s: float | None = None  # mean time between host failures (None: hosts never fail)
    mttr_s: float = 600.0
    detect_s: float = 30.0
    dispatch_s: float = 0.0  # per-attempt overhead beyond the host's time (broker, upload, fetch)
    res_exponent: float = 2.0  # attempt time ~ (resolution / tier resolution) ** res_exponent


@dataclass
class _Job:
    arrival: Arrival
    seq: int
    res: int
    attempts: int = 0
    first_start: float | None = None
    end: float | None = None
    state: str = "queued"
    ooms: int = 0


@dataclass
class _Host:
    index: int
    cls: int
    speed: float
    pools: tuple[int, ...]
    up: bool = True
    job: _Job | None = None
    token: int = 0
    busy_s: float = 0.0
    started: float = 0.0


@dataclass
class PriorityStats:
    jobs: int
    wait_mean: float
    wait_p50: float
    wait_p95: float
    wait_p99: float
    wait_max: float
    total_p95: float


@dataclass
class SimResult:
    by_priority: dict[int, PriorityStats]
    utilisation: float
    utilisation_by_class: list[float]
    done: int
    dead: int
    attempts: int
    oom_downgrades: int
    retries: int
    host_failures: int
    max_queue: int
    horizon_s: float
    waits: dict[int, list[float]] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "by_priority": {f"P{p}": vars(s) for p, s in sorted(self.by_priority.items())},
            "utilisation": self.utilisation,
            "utilisation_by_class": self.utilisation_by_class,
            "done": self.done,
            "dead": self.dead,
            "attempts": self.attempts,
            "oom_downgrades": self.oom_downgrades,
            "retries": self.retries,
            "host_failures": self.host_failures,
            "max_queue": self.max_queue,
            "horizon_s": self.horizon_s,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted list; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def pool_for(res: int, pools: Sequence[int]) -> int:
    """The smallest pool that serves ``res`` (as runner/fleet/queues.py routes a job)."""
    fitting = [p for p in sorted(pools) if res <= p]
    if not fitting:
        raise ValueError(f"resolution {res} is above the largest pool {max(pools)}")
    return fitting[0]


def poisson_arrivals(
    rate: float,
    duration_s: float,
    rng: random.Random,
    priorities: dict[int, float] | None = None,
    tiers: dict[str, float] | None = None,
    audio_s: tuple[float, float] = (10.0, 10.0),
) -> list[Arrival]:
    """Arrivals at ``rate`` per second for ``duration_s``, priorities and tiers drawn by weight."""
    if rate <= 0:
        raise ValueError(f"arrival rate must be > 0 jobs/s, not {rate}")
    prio = priorities or {0: 0.1, 1: 0.3, 2: 0.6}
    mix = tiers or {"fast": 0.3, "balanced": 0.5, "hq": 0.2}
    p_keys, p_w = list(prio), list(prio.values())
    t_keys, t_w = list(mix), list(mix.values())
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t > duration_s:
            return out
        out.append(
            Arrival(
                t,
                rng.choices(p_keys, p_w)[0],
                rng.choices(t_keys, t_w)[0],
                rng.uniform(*audio_s),
            )
        )


class _Sim:
    def __init__(self, cfg: FleetConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.events: list = []
        self.seq = 0
        self.queues: dict[int, list] = {p: [] for p in cfg.pools}
        self.hosts: list[_Host] = []
        self.idle: list[list[_Host]] = []
        for ci, hc in enumerate(cfg.hosts):
            pools = tuple(p for p in sorted(cfg.pools) if p <= hc.max_res)
            if not pools:
                raise ValueError(f"hosts with max_res {hc.max_res} serve no pool of {list(cfg.pools)}")
            members = []
            for _ in range(hc.count):
                host = _Host(len(self.hosts), ci, hc.speed, pools)
                self.hosts.append(host)
                members.append(host)
            self.idle.append(members[::-1])
        self.jobs: list[_Job] = []
        self.attempts = self.ooms = self.retries = self.failures = self.max_queue = 0
        self.now = 0.0

    def push(self, t: float, kind: str, *data) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def enqueue(self, job: _Job, t: float) -> None:
        self.seq += 1
        heapq.heappush(
            self.queues[pool_for(job.res, self.cfg.pools)], (job.arrival.priority, t, self.seq, job)
        )
        self.max_queue = max(self.max_queue, sum(len(q) for q in self.queues.values()))

    def run(self, arrivals: Iterable[Arrival]) -> None:
        for arrival in arrivals:
            self.push(arrival.t, "arrive", arrival)
        if self.cfg.mtbf_s:
            for host in self.hosts:
                self.push(self.rng.expovariate(1.0 / self.cfg.mtbf_s), "down", host)
        pending = len(self.events) - (len(self.hosts) if self.cfg.mtbf_s else 0)
        while self.events and pending:
            t, _, kind, data = heapq.heappop(self.events)
            self.now = t
            if kind == "arrive":
                arrival = data[0]
                job = _Job(arrival, len(self.jobs), TIER_RES.get(arrival.tier, 512))
                self.jobs.append(job)
                self.enqueue(job, t)
            elif kind == "end":
                host, token, outcome = data
                if token == host.token:
                    pending -= self.finish(host, outcome)
            elif kind == "ready":
                self.enqueue(data[0], t)
            elif kind == "down":
                pending -= self.host_down(data[0])
            elif kind == "up":
                data[0].up = True
                self.idle[data[0].cls].append(data[0])
                self.push(t + self.rng.expovariate(1.0 / self.cfg.mtbf_s), "down", data[0])
            if not self.events or self.events[0][0] > t:
                self.dispatch()  # after every event of this instant: a batch is seen whole

    def dispatch(self) -> None:
        for idle in self.idle:
            while idle:
                pools = idle[-1].pools
                heads = [(self.queues[p][0], p) for p in pools if self.queues[p]]
                if not heads:
                    break
                best = min(heads)
                heapq.heappop(self.queues[best[1]])
                self.start(idle.pop(), best[0][3])

    def attempt_seconds(self, job: _Job, speed: float) -> float:
        arrival = job.arrival
        if arrival.job_s is not None:
            base = arrival.job_s
        else:
            base = self.cfg.tiers[arrival.tier].sample(self.rng, arrival.audio_s)
        scale = (job.res / TIER_RES.get(arrival.tier, job.res)) ** self.cfg.res_exponent
        return base * scale / speed

    def start(self, host: _Host, job: _Job) -> None:
        cfg = self.cfg
        job.attempts += 1
        self.attempts += 1
        job.state = "running"
        if job.first_start is None:
            job.first_start = self.now
        seconds = self.attempt_seconds(job, host.speed)
        model = cfg.tiers.get(job.arrival.tier)
        draw = self.rng.random()
        oom_p = model.oom_p if model else 0.0
        if draw < oom_p:
            outcome, seconds = "oom", seconds * cfg.oom_cost
        elif draw < oom_p + cfg.fail_p:
            outcome, seconds = "fail", seconds * cfg.fail_cost
        else:
            outcome = "ok"
        host.job, host.started = job, self.now
        host.token += 1
        self.push(self.now + seconds + cfg.dispatch_s, "end", host, host.token, outcome)

    def release(self, host: _Host) -> _Job:
        job = host.job
        host.busy_s += self.now - host.started
        host.job = None
        return job

    def finish(self, host: _Host, outcome: str) -> int:
        job = self.release(host)
        self.idle[host.cls].append(host)
        if outcome == "ok":
            return self.end(job, "done")
        if outcome == "oom":
            lower = [r for r in RES_LADDER if r < job.res]
            if not lower:
                return self.end(job, "dead")
            job.res, job.ooms = lower[0], job.ooms + 1
            self.ooms += 1
        return self.retry(job, 0.0 if outcome == "oom" else self.backoff(job))

    def backoff(self, job: _Job) -> float:
        return self.rng.expovariate(1.0 / (self.cfg.backoff_s * 2 ** (job.attempts - 1)))

    def retry(self, job: _Job, delay: float) -> int:
        if job.attempts >= self.cfg.max_attempts:
            return self.end(job, "dead")
        self.retries += 1
        job.state = "queued"
        self.push(self.now + delay, "ready", job)
        return 0

    def host_down(self, host: _Host) -> int:
        self.failures += 1
        host.up = False
        host.token += 1
        self.push(self.now + self.rng.expovariate(1.0 / self.cfg.mttr_s), "up", host)
        if host.job is None:
            self.idle[host.cls].remove(host)
            return 0
        return self.retry(self.release(host), self.cfg.detect_s)

    def end(self, job: _Job, state: str) -> int:
        job.state, job.end = state, self.now
        return 1


def simulate(
    arrivals: Iterable[Arrival], cfg: FleetConfig, seed: int = 0, warmup_s: float = 0.0
) -> SimResult:
    """Run the fleet over ``arrivals`` until every job has ended; statistics skip ``warmup_s``."""
    sim = _Sim(cfg, seed)
    sim.run(sorted(arrivals, key=lambda a: a.t))
    horizon = max((j.end or 0.0) for j in sim.jobs) if sim.jobs else 0.0
    for host in sim.hosts:  # hosts still busy at the end (none when every job ended)
        if host.job is not None:
            host.busy_s += horizon - host.started
    counted = [j for j in sim.jobs if j.arrival.t >= warmup_s]
    waits: dict[int, list[float]] = {}
    totals: dict[int, list[float]] = {}
    for job in counted:
        waits.setdefault(job.arrival.priority, []).append(job.first_start - job.arrival.t)
        totals.setdefault(job.arrival.priority, []).append(job.end - job.arrival.t)
    by_priority = {
        p: PriorityStats(
            len(w),
            sum(w) / len(w),
            percentile(w, 50),
            percentile(w, 95),
            percentile(w, 99),
            max(w),
            percentile(totals[p], 95),
        )
        for p, w in sorted(waits.items())
    }
    per_class = []
    for ci, hc in enumerate(cfg.hosts):
        busy = sum(h.busy_s for h in sim.hosts if h.cls == ci)
        per_class.append(busy / (hc.count * horizon) if horizon and hc.count else 0.0)
    total_busy = sum(h.busy_s for h in sim.hosts)
    return SimResult(
        by_priority=by_priority,
        utilisation=total_busy / (len(sim.hosts) * horizon) if horizon and sim.hosts else 0.0,
        utilisation_by_class=per_class,
        done=sum(j.state == "done" for j in sim.jobs),
        dead=sum(j.state == "dead" for j in sim.jobs),
        attempts=sim.attempts,
        oom_downgrades=sim.ooms,
        retries=sim.retries,
        host_failures=sim.failures,
        max_queue=sim.max_queue,
        horizon_s=horizon,
        waits=waits,
    )


__all__ = [
    "Arrival",
    "FleetConfig",
    "HostClass",
    "SimResult",
    "TIERS",
    "percentile",
    "poisson_arrivals",
    "simulate",
]
