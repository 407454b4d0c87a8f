"""``sonic-runner plan``: what a capacity planner types, and what it gets back."""

from __future__ import annotations

import json

import pytest
from comfyui_sonic.runner.capacity.jobtimes import JobTimeError, parse_model, parse_tiers
from comfyui_sonic.runner.capacity.plan import PlanError, hosts_needed, parse_hosts, read_arrivals
from comfyui_sonic.runner.capacity.simulate import Arrival, FleetConfig, HostClass, simulate
from comfyui_sonic.runner.cli import main


def test_plan_sizes_the_fleet_for_the_seeds_numbers(capsys):
    # 0.2 jobs/s of 10 s clips at 40-60 s each = 10 hosts of work; at <= 90% busy at least 12.
    assert main(["plan", "--rate", "0.2", "--hours", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["sized_for_targets"] and plan["meets_targets"]
    assert 11 <= plan["hosts"] <= 14
    assert plan["by_priority"]["P0"]["wait_p95"] < 30
    assert plan["utilisation"] <= 0.9


def test_one_host_fewer_than_the_plan_misses_a_bound():
    arrivals = [Arrival(t * 5.0, priority=t % 3) for t in range(1500)]
    tiers = parse_tiers(None)
    targets = {0: 5.0, 1: 10.0, 2: 20.0}
    n, result = hosts_needed(arrivals, lambda k: FleetConfig([HostClass(k)], tiers), targets, max_util=1.0)
    assert all(result.by_priority[p].wait_p95 < limit for p, limit in targets.items())
    fewer = simulate(arrivals, FleetConfig([HostClass(n - 1)], tiers))
    assert any(fewer.by_priority[p].wait_p95 >= limit for p, limit in targets.items())


def test_plan_for_given_hosts_prints_lanes_and_utilisation(capsys):
    assert main(["plan", "--rate", "0.1", "--hours", "1", "--hosts", "4x1024,2x768"]) == 0
    out = capsys.readouterr().out
    assert "P0" in out and "P2" in out and "utilisation" in out and "6 hosts" in out


def test_plan_replays_a_measured_trace(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    trace.write_text("t,priority,tier,audio_s,job_s\n0,P0,fast,10,4\n0,P2,hq,10,4\n1,P1,balanced,5,2\n")
    assert main(["plan", "--arrivals", str(trace), "--hosts", "1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # P0 runs first (0-4 s), then P1 (4-6 s, waited 3 s), then P2 (6-10 s).
    assert plan["by_priority"]["P1"]["wait_max"] == 3.0
    assert plan["by_priority"]["P2"]["wait_max"] == 6.0


@pytest.mark.parametrize(
    "argv, says",
    [
        (["plan", "--rate", "1", "--tier", "hq=gamma:3"], "distribution is one of"),
        (["plan", "--rate", "1", "--tier", "ultra=fixed:3"], "TIER one of"),
        (["plan", "--rate", "1", "--hosts", "many"], "--hosts 'many'"),
        (["plan", "--rate", "1", "--priority-mix", "P7=1"], "'P7' is not one of"),
        (["plan"], "give the load"),
    ],
)
def test_bad_plan_options_say_what_to_write(argv, says, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_job_time_specs():
    model = parse_model("lognormal:90:0.25+tail:0.02:3+oom:0.1")
    assert (model.dist, model.a, model.b, model.tail_p, model.tail_x, model.oom_p) == (
        "lognormal",
        90,
        0.25,
        0.02,
        3,
        0.1,
    )
    assert parse_model("uniform:40:60").mean() == 50
    assert parse_model("fixed:10+tail:0.5:3").mean(audio_s=5) == pytest.approx(10)
    with pytest.raises(JobTimeError, match="LO <= HI"):
        parse_model("uniform:60:40")
    with pytest.raises(JobTimeError, match="oom probability"):
        parse_model("fixed:1+oom:2")
    tiers = parse_tiers(["*=fixed:5", "hq=fixed:9"])
    assert tiers["fast"].a == 5 and tiers["hq"].a == 9


def test_host_and_trace_parsing(tmp_path):
    assert parse_hosts("8x1024,4x768@1.5") == [HostClass(8, 1024, 1.0), HostClass(4, 768, 1.5)]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,priority\nsoon,P1\n")
    with pytest.raises(PlanError, match="line 2"):
        read_arrivals(bad)
