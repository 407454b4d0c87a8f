"""``sonic-runner plan``: waits and utilisation for a fleet, or the fleet that meets the QoS targets.

Two questions, one simulation (runner/capacity/simulate.py):

    sonic-runner plan --rate 0.4 --hosts 24            # P0/P1/P2 waits and utilisation of 24 hosts
    sonic-runner plan --per-day 1000000                 # how many hosts keep P0<30 s, P1<60 s, P2<120 s
    sonic-runner plan --rate 0.4 --tier hq=lognormal:90:0.3+oom:0.05 --mtbf-h 72 --hosts 8x1024,16x768

Job times are per 10 s of audio and per tier (see jobtimes.py); the default is the seeds' 40-60 s
per 10 s clip on an A100 until bench_sonic.py has measured a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

from .jobtimes import SEED_SPEC, TIERS, parse_tiers
from .simulate import Arrival, FleetConfig, HostClass, SimResult, poisson_arrivals, simulate

DEFAULT_TARGETS = {0: 30.0, 1: 60.0, 2: 120.0}


class PlanError(ValueError):
    """A plan option that cannot be read: the message names it and shows the form."""


def parse_hosts(text: str) -> list[HostClass]:
    """``"24"`` or ``"8x1024,16x768"`` or ``"4x1024@1.5"`` (speed factor) -> host classes."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        try:
            body, _, speed = part.partition("@")
            count, _, res = body.partition("x")
            out.append(HostClass(int(count), int(res) if res else 1024, float(speed) if speed else 1.0))
        except ValueError:
            raise PlanError(
                f"--hosts {text!r}: write N, or NxMAXRES[@SPEED] separated by commas, e.g. 8x1024,4x768"
            ) from None
    if not out or any(h.count < 0 for h in out) or sum(h.count for h in out) == 0:
        raise PlanError(f"--hosts {text!r}: give at least one host, e.g. 8 or 8x1024")
    return out


def parse_weights(text: str, option: str, keys: dict[str, object]) -> dict:
    """``"P0=0.1,P1=0.3,P2=0.6"`` -> {0: 0.1, ...} (keys maps the spelling to the value)."""
    out = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, _, weight = part.partition("=")
        if name not in keys:
            raise PlanError(f"{option} {text!r}: {name!r} is not one of {', '.join(keys)}")
        try:
            out[keys[name]] = float(weight)
        except ValueError:
            raise PlanError(f"{option} {text!r}: {part!r} needs a number after '='") from None
    if not out or sum(out.values()) <= 0:
        raise PlanError(f"{option} {text!r}: give positive weights, e.g. P0=0.1,P1=0.3,P2=0.6")
    return out


def read_arrivals(path: Path) -> list[Arrival]:
    """A CSV with columns t, priority (0-2 or P0-P2), tier, audio_s[, job_s] (a measured trace)."""
    rows = []
    with path.open(newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            try:
                prio = str(row.get("priority", "1")).upper().removeprefix("P")
                job_s = row.get("job_s")
                rows.append(
                    Arrival(
                        float(row["t"]),
                        int(prio),
                        row.get("tier") or "balanced",
                        float(row.get("audio_s") or 10.0),
                        float(job_s) if job_s not in (None, "") else None,
                    )
                )
            except (KeyError, ValueError):
                raise PlanError(
                    f"{path} line {n}: need t, priority, tier, audio_s[, job_s]; got {row}"
                ) from None
    if not rows:
        raise PlanError(f"{path}: no arrivals (a CSV with a header t,priority,tier,audio_s)")
    return rows


def meets(result: SimResult, targets: dict[int, float], quantile: float, max_util: float = 1.0) -> bool:
    """Every priority's wait at ``quantile`` is under its target and the hosts are at most ``max_util`` busy.

    Why a utilisation bound too: near 100% the waits of a finite run depend on how long it ran
    (the queue never settles), and a fleet with no slack has none for a failed host either.
    """
    if result.utilisation > max_util:
        return False
    for prio, limit in targets.items():
        stats = result.by_priority.get(prio)
        if stats is None:
            continue
        value = {50: stats.wait_p50, 95: stats.wait_p95, 99: stats.wait_p99}.get(
            int(quantile), stats.wait_p95
        )
        if value >= limit:
            return False
    return True


def hosts_needed(
    arrivals: list[Arrival],
    make_config: Callable[[int], FleetConfig],
    targets: dict[int, float] = DEFAULT_TARGETS,
    quantile: float = 95,
    seed: int = 0,
    max_util: float = 0.9,
    limit: int = 100_000,
) -> tuple[int, SimResult]:
    """The fewest hosts that meet ``targets`` (same arrivals and seed for every count tried)."""
    cfg1 = make_config(1)
    horizon = max(a.t for a in arrivals) or 1.0
    work = sum(a.job_s if a.job_s is not None else cfg1.tiers[a.tier].mean(a.audio_s) for a in arrivals)
    low = max(1, math.ceil(work / horizon))  # fewer hosts than the offered load never keep up
    cache: dict[int, SimResult] = {}

    def ok(n: int) -> bool:
        if n not in cache:
            cache[n] = simulate(arrivals, make_config(n), seed=seed)
        return meets(cache[n], targets, quantile, max_util)

    high = low
    while not ok(high):
        if high >= limit:
            raise PlanError(f"more than {limit} hosts would be needed; check the rate and job times")
        low, high = high + 1, min(limit, high * 2)
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return high, cache[high]


def add_parser(sub) -> argparse.ArgumentParser:
    """The ``plan`` subcommand's options (called by runner/cli.py)."""
    plan = sub.add_parser(
        "plan",
        help="capacity plan: simulate the queue (waits, utilisation) or size the fleet for the QoS targets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load = plan.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="arrivals per second (Poisson)")
    load.add_argument("--per-day", type=float, help="arrivals per day (Poisson)")
    load.add_argument("--arrivals", type=Path, help="CSV trace: t,priority,tier,audio_s[,job_s]")
    plan.add_argument("--hours", type=float, default=4.0, help="simulated hours of arrivals (default 4)")
    plan.add_argument("--hosts", help="N or NxMAXRES[@SPEED],... (omit: find the fewest that meet --targets)")
    plan.add_argument(
        "--tier", action="append", metavar="TIER=SPEC", help=f"job time per 10 s (default {SEED_SPEC})"
    )
    plan.add_argument("--priority-mix", default="P0=0.1,P1=0.3,P2=0.6")
    plan.add_argument("--tier-mix", default="fast=0.3,balanced=0.5,hq=0.2")
    plan.add_argument("--audio-s", default="10", help="clip length in seconds, or LO:HI (uniform)")
    plan.add_argument("--targets", default="P0=30,P1=60,P2=120", help="wait bounds in seconds")
    plan.add_argument(
        "--quantile", type=float, default=95, choices=(50, 95, 99), help="wait quantile for targets"
    )
    plan.add_argument(
        "--max-util", type=float, default=0.9, help="sizing: busiest the hosts may be (default 0.9)"
    )
    plan.add_argument("--max-attempts", type=int, default=3)
    plan.add_argument("--fail-rate", type=float, default=0.0, help="transient failures per attempt (0..1)")
    plan.add_argument("--mtbf-h", type=float, default=None, help="mean hours between failures of one host")
    plan.add_argument("--mttr-min", type=float, default=10.0, help="minutes a failed host stays down")
    plan.add_argument("--overhead-s", type=float, default=0.0, help="seconds per attempt beyond the GPU time")
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--json", action="store_true", help="print JSON")
    return plan


def _arrivals(args: argparse.Namespace, rng: random.Random) -> list[Arrival]:
    if args.arrivals:
        return read_arrivals(args.arrivals)
    rate = args.rate if args.rate is not None else (args.per_day / 86400.0 if args.per_day else None)
    if rate is None or rate <= 0:
        raise PlanError("plan: give the load: --rate JOBS_PER_S, --per-day N or --arrivals trace.csv")
    lo, _, hi = args.audio_s.partition(":")
    try:
        audio = (float(lo), float(hi or lo))
    except ValueError:
        raise PlanError(f"--audio-s {args.audio_s!r}: seconds, or LO:HI") from None
    prio = parse_weights(args.priority_mix, "--priority-mix", {"P0": 0, "P1": 1, "P2": 2})
    tiers = parse_weights(args.tier_mix, "--tier-mix", {t: t for t in TIERS})
    return poisson_arrivals(rate, args.hours * 3600.0, rng, prio, tiers, audio)


def run_plan(args: argparse.Namespace) -> dict:
    """The plan as a dict (printed as a table or JSON by cmd_plan)."""
    tiers = parse_tiers(args.tier)
    arrivals = _arrivals(args, random.Random(args.seed))
    targets = parse_weights(args.targets, "--targets", {"P0": 0, "P1": 1, "P2": 2})

    def config(hosts: list[HostClass]) -> FleetConfig:
        return FleetConfig(
            hosts=hosts,
            tiers=tiers,
            max_attempts=args.max_attempts,
            fail_p=args.fail_rate,
            mtbf_s=args.mtbf_h * 3600 if args.mtbf_h else None,
            mttr_s=args.mttr_min * 60,
            dispatch_s=args.overhead_s,
        )

    if args.hosts:
        hosts = parse_hosts(args.hosts)
        result = simulate(arrivals, config(hosts), seed=args.seed)
        sized = None
    else:
        sized, result = hosts_needed(
            arrivals,
            lambda n: config([HostClass(n)]),
            targets,
            args.quantile,
            seed=args.seed,
            max_util=args.max_util,
        )
        hosts = [HostClass(sized)]
    horizon = max(a.t for a in arrivals)
    return {
        "arrivals": len(arrivals),
        "rate_per_s": len(arrivals) / horizon if horizon else 0.0,
        "hosts": sum(h.count for h in hosts),
        "sized_for_targets": sized is not None,
        "targets_s": {f"P{p}": t for p, t in targets.items()},
        "quantile": args.quantile,
        "max_util": args.max_util if sized is not None else None,
        "meets_targets": meets(result, targets, args.quantile),
        "tiers": {t: vars(m) for t, m in tiers.items()},
        **result.to_dict(),
    }


def format_plan(plan: dict) -> str:
    q = int(plan["quantile"])
    lines = [
        f"{plan['arrivals']} arrivals ({plan['rate_per_s']:.3f}/s), {plan['hosts']} hosts"
        + (
            f" (the fewest that meet the targets at <= {plan['max_util']:.0%} busy)"
            if plan["sized_for_targets"]
            else ""
        ),
        f"{'lane':<5}{'jobs':>8}{'wait mean':>11}{'p50':>9}{'p95':>9}{'p99':>9}{'total p95':>11}{'target':>9}",
    ]
    for lane, s in plan["by_priority"].items():
        target = plan["targets_s"].get(lane)
        lines.append(
            f"{lane:<5}{s['jobs']:>8}{s['wait_mean']:>10.1f}s{s['wait_p50']:>8.1f}s{s['wait_p95']:>8.1f}s"
            f"{s['wait_p99']:>8.1f}s{s['total_p95']:>10.1f}s{(f'<{target:g}s' if target else '-'):>9}"
        )
    lines.append(
        f"utilisation {plan['utilisation']:.1%}; done {plan['done']}, dead {plan['dead']}; "
        f"{plan['attempts']} attempts, {plan['retries']} retries, {plan['oom_downgrades']} OOM downgrades, "
        f"{plan['host_failures']} host failures; longest queue {plan['max_queue']}"
    )
    lines.append(f"targets at p{q}: {'met' if plan['meets_targets'] else 'NOT met'}")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    plan = run_plan(args)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return 0
