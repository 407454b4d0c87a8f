"""The shipped Grafana dashboard only queries metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from comfyui_sonic.runner.metrics import Metrics
from prometheus_client import generate_latest

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-dashboard.json"


def test_every_dashboard_query_names_an_exported_metric():
    metrics = Metrics()
    metrics.add_store_gauges(lambda: {"jobs": {"done": 1}, "queued": {"P0": 1}, "webhook_backlog": 0})
    metrics.latency.labels(tier="fast", phase="total").observe(1)
    for counter, labels in (
        (metrics.submitted, {"tier": "fast", "priority": "P1"}),
        (metrics.finished, {"state": "done", "reason": ""}),
        (metrics.refused, {"reason": "invalid"}),
        (metrics.retries, {"reason": "oom"}),
        (metrics.requests, {"route": "/v1/jobs", "status": "202"}),
    ):
        counter.labels(**labels).inc()
    metrics.oom_downgrades.inc()
    exported = set(re.findall(r"^(sonic_\w+?)(?:\{| )", generate_latest(metrics.registry).decode(), re.M))
    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bsonic_\w+", target["expr"]))
    assert queried and queried <= exported, queried - exported
