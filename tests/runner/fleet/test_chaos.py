"""Chaos on a real RabbitMQ + PostgreSQL: 200 jobs, 4 fake hosts, 4 workers, and everything breaking.

During one run: a worker is killed with kill -9 mid-job twice (and started again), RabbitMQ
is restarted, one host is killed for good, and the publishing `batch` is killed with
kill -9 and resumed. At the end every job has one verified output, no prompt ran twice,
no job ran again while an earlier attempt of it could still run, and `report` accounts
for every attempt in the store. SONIC_CHAOS_JOBS sets the number of jobs (default 200).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.fake_comfy.process import FakeComfyProcess

from .harness import check_exactly_once, wait_until

N_JOBS = int(os.environ.get("SONIC_CHAOS_JOBS", "200"))


def _kill_mid_job(fleet, store, index: int) -> subprocess.Popen:
    """kill -9 worker ``index`` while it holds a running job, then start it again."""
    proc = fleet.workers[index]
    wait_until(lambda: _holds_running_job(store, proc), 60, f"worker {index} running a job", interval=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return proc


def _holds_running_job(store, proc) -> bool:
    return any(
        (store.holder(j.job_id)[0] or "").endswith(f"-{proc.pid}")
        for j in store.jobs(["running"], batch="b1")
    )


@pytest.mark.timeout(600)
def test_chaos_200_jobs_4_hosts_4_workers_nothing_lost_nothing_twice(fleet, rabbitmq, tmp_path):
    hosts = [FakeComfyProcess(tmp_path / f"host{i}", run_seconds=0.2).start() for i in range(4)]
    try:
        workflow, manifest = fleet.inputs(hosts[0].url, N_JOBS)
        for host in hosts:
            fleet.worker(host.url)
        follower = fleet.follow(workflow, manifest)
        with fleet.store() as store:

            def done() -> int:
                return store.counts(batch="b1").get("done", 0)

            wait_until(lambda: done() >= N_JOBS * 0.1, 120, "10% done")
            _kill_mid_job(fleet, store, 0)
            fleet.workers[0] = fleet.worker(hosts[0].url)

            wait_until(lambda: done() >= N_JOBS * 0.3, 120, "30% done")
            rabbitmq.restart()  # kill -9 of the broker, then the same node again

            wait_until(lambda: done() >= N_JOBS * 0.45, 120, "45% done")
            follower.send_signal(signal.SIGKILL)  # the publisher dies
            follower.wait(10)
            hosts[3].kill()  # and a host dies for good

            wait_until(lambda: done() >= N_JOBS * 0.55, 120, "55% done")
            _kill_mid_job(fleet, store, 1)
            fleet.workers[1] = fleet.worker(hosts[1].url)

            resumed = fleet.follow(workflow, manifest, "--resume")
            _, err = resumed.communicate(timeout=300)
            assert resumed.returncode == 0, err

            executions = [pid for host in hosts for pid in host.executions()]
            check_exactly_once(store, executions, N_JOBS)
            attempts = [a for a in store.attempts() if a["job_id"].startswith("b1.")]

        report = fleet.cli("report", "--db", fleet.db_url, "--batch", "b1", "--json")
        assert report.returncode == 0, report.stderr
        reported = json.loads(report.stdout)
        assert reported["summary"]["attempts_recorded"] == len(attempts)
        assert reported["summary"]["attempts"] == len(attempts)  # every counted attempt has its row
        assert {job["state"] for job in reported["jobs"]} == {"done"}
        assert not hosts[3].alive()
    finally:
        for host in hosts:
            host.stop()
