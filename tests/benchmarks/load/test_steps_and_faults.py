"""The load test's small parts: the stepped ramp, fault specs and the nginx configuration it runs."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.load.faults import FaultError, parse_fault
from benchmarks.load.nginx import EXAMPLE, nginx_binary, render
from benchmarks.load.steps import StepError, parse_steps, spawn_rate, step_at


def test_steps_run_back_to_back_and_end():
    steps = parse_steps("10:60, 20:30,40:60")
    assert [(s.users, s.start_s, s.end_s) for s in steps] == [(10, 0, 60), (20, 60, 90), (40, 90, 150)]
    assert step_at(steps, 0).users == 10 and step_at(steps, 89.9).users == 20 and step_at(steps, 150) is None
    assert spawn_rate(steps, steps[2], ramp_s=2) == 10  # 20 -> 40 users within 2 s


@pytest.mark.parametrize("text", ["", "ten:60", "10", "10:0", "0:30"])
def test_bad_steps_say_the_form(text):
    with pytest.raises(StepError, match="USERS:SECONDS"):
        parse_steps(text)


def test_fault_specs():
    assert str(parse_fault("stop-replica@120:30")) == "stop-replica@120:30"
    assert parse_fault("stop-replica@120").arg == 30  # default: down for 30 s
    assert parse_fault("oom@30").arg == 0.1
    assert parse_fault("kill-worker@60").arg is None
    with pytest.raises(FaultError, match="ACTION@SECONDS"):
        parse_fault("unplug@10")


def test_the_shipped_nginx_config_gets_the_load_tests_values():
    text = render(
        EXAMPLE.read_text(), 18080, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"], 500, 900
    )
    assert "listen 127.0.0.1:18080;" in text and "rate=500r/s" in text and "burst=900" in text
    assert text.count("max_fails=3 fail_timeout=10s") == 3 and "10.0.0.11" not in text
    assert "least_conn;" in text and "limit_req zone=sonic_submit" in text


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/install_services.sh)")
def test_nginx_accepts_the_rendered_config(tmp_path):
    from benchmarks.load.nginx import Nginx

    server = Nginx(tmp_path, 18081, ["127.0.0.1:9001", "127.0.0.1:9002"])
    done = subprocess.run(
        [nginx_binary(), "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert server.url.endswith(":18081")
