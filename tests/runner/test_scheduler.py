"""Scheduling rules: priority lanes, FIFO inside a lane, least loaded host, capability, health backoff."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.scheduler import HostState, Scheduler


def job(row, priority=1, resolution=512, **spec):
    return JobRecord(job_id=f"j{row}", row=row, priority=priority, resolution=resolution, spec=spec)


def drain(s, now=0.0):
    out = []
    while (picked := s.next_assignment(now)) is not None:
        out.append((picked[0].job_id, picked[1].name))
    return out


def test_p0_before_p1_before_p2_and_fifo_inside_a_lane():
    s = Scheduler([HostState("h", cap=100)])
    for row, prio in [(1, 2), (2, 1), (3, 0), (4, 1), (5, 0), (6, 2)]:
        s.push(job(row, prio))
    assert [j for j, _ in drain(s)] == ["j3", "j5", "j2", "j4", "j1", "j6"]


def test_least_outstanding_work_and_per_host_cap():
    s = Scheduler([HostState("a", cap=2), HostState("b", cap=2)])
    for row in range(1, 7):
        s.push(job(row))
    placed = drain(s)
    assert len(placed) == 4  # 2 hosts x cap 2; the rest waits
    assert sorted(h for _, h in placed) == ["a", "a", "b", "b"]
    assert [h for _, h in placed[:2]] in (["a", "b"], ["b", "a"])  # spread before stacking
    s.release("j1")
    (nxt,) = drain(s)
    assert nxt == ("j5", dict(placed)["j1"])


def test_capability_routing_never_sends_a_job_to_a_smaller_host():
    small = HostState("small", max_resolution=512, cap=10)
    big = HostState("big", max_resolution=1024, cap=1)
    s = Scheduler([small, big])
    s.push(job(1, resolution=1024))
    s.push(job(2, resolution=1024))
    s.push(job(3, resolution=512))
    placed = drain(s)
    assert ("j1", "big") in placed and ("j3", "small") in placed
    assert all(j != "j2" for j, _ in placed)  # waits for the big host instead of going to the small one
    s.release("j1")
    assert drain(s) == [("j2", "big")]


def test_vram_declarations_route_high_resolution_jobs():
    s = Scheduler([HostState("12g", vram_gb=12, cap=5), HostState("80g", vram_gb=80, cap=5)])
    s.push(job(1, resolution=1024))
    s.push(job(2, resolution=384))
    placed = dict(drain(s))
    assert placed["j1"] == "80g"
    s2 = Scheduler([HostState("12g", vram_gb=12)])
    assert s2.why_unplaceable(job(1, vram_gb=40)) is not None


def test_a_job_no_host_can_take_gets_a_clear_reason():
    s = Scheduler([HostState("http://a:1", max_resolution=512), HostState("http://b:1", max_resolution=768)])
    why = s.why_unplaceable(job(1, resolution=1024))
    assert "min_resolution=1024" in why and "max_resolution=768" in why and "http://a:1" in why
    assert s.why_unplaceable(job(2, resolution=768)) is None


def test_unhealthy_hosts_get_no_work_and_are_probed_with_exponential_backoff():
    s = Scheduler([HostState("a"), HostState("b")], health_backoff_base=1.0, health_backoff_cap=8.0)
    assert s.mark_unhealthy("a", 100.0, "refused") is True
    for row in range(1, 4):
        s.push(job(row))
    assert {h for _, h in drain(s, 100.0)} == {"b"}
    assert [h.name for h in s.due_checks(100.5)] == []
    assert [h.name for h in s.due_checks(101.0)] == ["a"]
    s.mark_unhealthy("a", 101.0, "refused")
    s.mark_unhealthy("a", 103.0, "refused")
    s.mark_unhealthy("a", 107.0, "refused")
    assert s.hosts["a"].next_check_at == 107.0 + 8.0  # 1, 2, 4, then capped at 8
    assert s.mark_healthy("a") is True and s.hosts["a"].check_failures == 0
    assert drain(s, 110.0) == [("j3", "a")]


def test_delayed_jobs_wait_for_their_backoff():
    s = Scheduler([HostState("a", cap=5)])
    late = job(1)
    late.next_attempt_at = 50.0
    s.push(late)
    s.push(job(2))
    assert drain(s, 10.0) == [("j2", "a")]
    assert s.next_wakeup() == 50.0
    assert drain(s, 50.0) == [("j1", "a")]


def test_no_hosts_is_an_error():
    with pytest.raises(ValueError, match="--host"):
        Scheduler([])


def test_an_idle_host_not_heard_from_lately_is_probed_before_it_gets_work():
    s = Scheduler([HostState("a"), HostState("b")], idle_check_interval=10.0)
    s.push(job(1))
    assert drain(s, 100.0) == []  # nobody has answered yet: both are probed first
    assert [h.name for h in s.due_checks(100.0)] == ["a", "b"]
    s.hosts["a"].checking = True  # its probe is in flight
    assert [h.name for h in s.due_checks(100.0)] == ["b"] and drain(s, 100.0) == []
    s.hosts["a"].checking, s.hosts["a"].last_ok = False, 100.0  # it answered
    s.hosts["b"].last_ok = 104.0
    assert drain(s, 100.5) == [("j1", "a")]
    assert s.due_checks(105.0) == [] and s.next_wakeup() == 114.0  # a is busy: only idle hosts are probed
    s.release("j1")
    assert s.next_wakeup() == 110.0  # a is idle again: its next check
    s.push(job(2))
    assert drain(s, 111.0) == [("j2", "b")]  # a was silent too long; b answered recently
    assert s.due_checks(111.0) == [s.hosts["a"]]


def test_an_excluded_host_gets_no_work_and_stranded_jobs_are_handed_back():
    s = Scheduler(
        [
            HostState("http://a:1", label="gpu1 (http://a:1)", cap=5),
            HostState("http://b:1", max_resolution=512),
        ]
    )
    s.push(job(1, resolution=1024))  # only a can take it
    s.push(job(2, resolution=512))
    assert s.exclude("http://a:1", "SonicModelError: weights missing") is True
    assert s.exclude("http://a:1", "again") is False
    assert [j.job_id for j in s.take_unplaceable()] == ["j1"]
    assert drain(s) == [("j2", "http://b:1")]
    why = s.why_unplaceable(job(3, resolution=1024))
    assert why == (
        "no host can run it: gpu1 (http://a:1): SonicModelError: weights missing; "
        "http://b:1: too small for min_resolution=1024 (max_resolution=512)"
    )
