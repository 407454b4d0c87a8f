"""The fleet simulator against queueing theory: M/M/c (Erlang C), priority lanes (Cobham), M/D/1.

Each check runs enough jobs that the simulated mean lies within a few percent of the formula;
a simulator that got the queue discipline, the service times or the clock wrong misses by far more.
"""

from __future__ import annotations

import math
import random

import pytest
from comfyui_sonic.runner.capacity.jobtimes import TierModel
from comfyui_sonic.runner.capacity.simulate import (
    Arrival,
    FleetConfig,
    HostClass,
    percentile,
    poisson_arrivals,
    simulate,
)


def erlang_c(c: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load ``offered`` = lambda/mu."""
    rho = offered / c
    top = offered**c / math.factorial(c) / (1 - rho)
    return top / (sum(offered**k / math.factorial(k) for k in range(c)) + top)


def exp_fleet(hosts: int, mean_s: float, **kw) -> FleetConfig:
    model = TierModel(dist="exp", a=mean_s, b=mean_s)
    return FleetConfig(hosts=[HostClass(hosts)], tiers={"fast": model, "balanced": model, "hq": model}, **kw)


def poisson(rate: float, n: int, seed: int, priorities=None) -> list[Arrival]:
    rng = random.Random(seed)
    return poisson_arrivals(rate, n / rate, rng, priorities or {1: 1.0}, {"balanced": 1.0})


def mean_wait(result, prio: int | None = None) -> float:
    waits = [w for p, ws in result.waits.items() if prio in (None, p) for w in ws]
    return sum(waits) / len(waits)


@pytest.mark.parametrize("hosts,rate", [(1, 0.7), (4, 3.0), (10, 8.5)])
def test_mmc_mean_wait_matches_erlang_c(hosts, rate):
    mean_s = 1.0
    result = simulate(poisson(rate, 150_000, seed=hosts), exp_fleet(hosts, mean_s), warmup_s=500)
    expected = erlang_c(hosts, rate * mean_s) * mean_s / (hosts - rate * mean_s)
    assert mean_wait(result) == pytest.approx(expected, rel=0.08)
    assert result.utilisation == pytest.approx(rate * mean_s / hosts, rel=0.03)


def test_mmc_probability_of_waiting_matches_erlang_c():
    result = simulate(poisson(3.0, 100_000, seed=7), exp_fleet(4, 1.0), warmup_s=500)
    waits = [w for ws in result.waits.values() for w in ws]
    share_waiting = sum(w > 1e-9 for w in waits) / len(waits)
    assert share_waiting == pytest.approx(erlang_c(4, 3.0), abs=0.02)


def test_priority_lanes_match_cobhams_formula():
    # Non-preemptive priorities on c servers with one exponential service rate (Cobham 1954):
    # W_k = C(c, a) / (c mu - lambda) * (1 - rho) / ((1 - s_{k-1}) (1 - s_k)), s_k = load of lanes <= k.
    hosts, mean_s, rates = 3, 1.0, {0: 0.5, 1: 0.9, 2: 1.1}
    total = sum(rates.values())
    arrivals = poisson(total, 200_000, seed=3, priorities={p: r / total for p, r in rates.items()})
    result = simulate(arrivals, exp_fleet(hosts, mean_s), warmup_s=500)
    rho = total * mean_s / hosts
    w0 = erlang_c(hosts, total * mean_s) * mean_s / (hosts - total * mean_s) * (1 - rho)
    below = 0.0
    for prio in (0, 1, 2):
        upto = below + rates[prio] * mean_s / hosts
        expected = w0 / ((1 - below) * (1 - upto))
        assert mean_wait(result, prio) == pytest.approx(expected, rel=0.1), f"P{prio}"
        below = upto
    assert mean_wait(result, 0) < mean_wait(result, 1) < mean_wait(result, 2)


def test_md1_matches_pollaczek_khinchine():
    # Fixed service time D: Wq = rho D / (2 (1 - rho)).
    model = TierModel(dist="fixed", a=2.0, b=2.0)
    cfg = FleetConfig(hosts=[HostClass(1)], tiers={"balanced": model})
    result = simulate(poisson(0.4, 100_000, seed=5), cfg, warmup_s=500)
    assert mean_wait(result) == pytest.approx(0.8 * 2.0 / (2 * 0.2), rel=0.06)


def test_a_trace_with_fixed_job_times_gives_exact_waits():
    # Two hosts, four jobs at t=0 of 10 s each: two start at once, two wait 10 s.
    arrivals = [Arrival(0.0, priority=p, job_s=10.0) for p in (2, 1, 0, 2)]
    result = simulate(arrivals, exp_fleet(2, 1.0))
    assert result.by_priority[0].wait_max == 0.0 and result.by_priority[1].wait_max == 0.0
    assert sorted(result.waits[2]) == [10.0, 10.0]
    assert result.horizon_s == 20.0 and result.utilisation == 1.0


def test_oom_moves_a_job_down_one_resolution_step_and_it_runs_faster():
    model = TierModel(dist="fixed", a=100.0, b=100.0, oom_p=1.0)
    cfg = FleetConfig(hosts=[HostClass(1)], tiers={"hq": model}, max_attempts=10, oom_cost=0.5)
    result = simulate([Arrival(0.0, tier="hq")], cfg)
    # 768 -> 512 -> 384, then nothing is left: dead after three OOM attempts.
    assert result.oom_downgrades == 2 and result.dead == 1 and result.attempts == 3
    # 50 s at 768, then 50 * (512/768)^2, then 50 * (384/768)^2
    assert result.horizon_s == pytest.approx(50 + 50 * (512 / 768) ** 2 + 50 * 0.25)


def test_transient_failures_retry_up_to_max_attempts():
    model = TierModel(dist="fixed", a=1.0, b=1.0)
    cfg = FleetConfig(hosts=[HostClass(2)], tiers={"balanced": model}, fail_p=0.5, max_attempts=3)
    result = simulate([Arrival(float(t)) for t in range(2000)], cfg, seed=1)
    # P(dead) = 0.5^3; every job is done or dead, never lost.
    assert result.done + result.dead == 2000
    assert result.dead / 2000 == pytest.approx(0.125, abs=0.03)


def test_host_failures_lose_no_job_and_cost_capacity():
    model = TierModel(dist="fixed", a=10.0, b=10.0)
    steady = FleetConfig(hosts=[HostClass(4)], tiers={"balanced": model})
    failing = FleetConfig(
        hosts=[HostClass(4)], tiers={"balanced": model}, mtbf_s=500, mttr_s=200, max_attempts=20
    )
    arrivals = poisson(0.3, 5000, seed=2)
    calm, rough = simulate(arrivals, steady), simulate(arrivals, failing, seed=2)
    assert rough.host_failures > 50
    assert rough.done == len(arrivals) and calm.done == len(arrivals)
    assert mean_wait(rough) > 2 * mean_wait(calm)


def test_pools_keep_big_jobs_off_small_hosts():
    model = TierModel(dist="fixed", a=10.0, b=10.0)
    # Only a 512 host: an hq job (768) has no host and never starts; the fast ones do.
    cfg = FleetConfig(
        hosts=[HostClass(1, max_res=512), HostClass(1, max_res=1024)], tiers={"hq": model, "fast": model}
    )
    arrivals = [Arrival(0.0, tier="hq"), Arrival(0.0, tier="hq"), Arrival(0.0, tier="fast")]
    result = simulate(arrivals, cfg)
    # The 1024 host runs both hq jobs in turn; the 512 host runs the fast one.
    assert sorted(result.waits[1]) == [0.0, 0.0, 10.0]
    assert result.utilisation_by_class == pytest.approx([0.5, 1.0])


def test_percentile_is_nearest_rank():
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([], 99) == 0.0
