"""`sonic-runner worker` and `batch --broker` on a real RabbitMQ and PostgreSQL, against fake hosts.

Each test starts real processes (workers, the publishing batch) the way an operator would,
and reads the outcome from the shared job store.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest
from kombu import Connection

from tests.fake_comfy import FakeComfy
from tests.fake_comfy.catalog import core_nodes
from tests.fake_comfy.process import free_port

from .harness import check_exactly_once, jsonl, wait_until

pytestmark = pytest.mark.timeout(180)


def _metrics(port: int) -> dict[str, float]:
    """A worker's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _history(host: FakeComfy) -> dict:
    with urllib.request.urlopen(f"{host.url}/history", timeout=10) as resp:
        return json.load(resp)


@pytest.fixture
def hosts(tmp_path):
    started = []

    def start(n: int = 1, **options) -> list[FakeComfy]:
        new = [FakeComfy(tmp_path / f"host{len(started) + i}", **options).start() for i in range(n)]
        started.extend(new)
        return new

    yield start
    for host in started:
        host.stop()


def test_a_manifest_runs_through_the_broker_exactly_once(fleet, hosts):
    h1, h2 = hosts(2, run_seconds=0.1)
    workflow, manifest = fleet.inputs(h1.url, 12)
    ports = [free_port(), free_port()]
    fleet.worker(h1.url, extra=("--metrics-port", str(ports[0])))
    fleet.worker(h2.url, extra=("--metrics-port", str(ports[1])))

    result = fleet.batch(workflow, manifest)

    assert result.returncode == 0, result.stderr
    assert "12 job(s)" in result.stderr and "12 published" in result.stderr
    events = jsonl(result.stdout)
    assert events[-1]["event"] == "batch" and events[-1]["done"] == 12
    assert {e["job_id"] for e in events if e["event"] == "job" and e["state"] == "done"} == {
        f"clip{i:03d}" for i in range(12)
    }
    assert sorted(p.name for p in (fleet.root / "out").glob("*.mp4")) == [
        f"clip{i:03d}.mp4" for i in range(12)
    ]
    with fleet.store() as store:
        check_exactly_once(store, h1.executions + h2.executions, 12)
    assert h1.executions and h2.executions  # both hosts took work
    # Each done prompt was deleted from its host's history once recorded (a render host's memory
    # does not grow with every job; ComfyUI itself keeps 10,000).
    assert [_history(h) for h in (h1, h2)] == [{}, {}]
    scraped = [_metrics(port) for port in ports]
    assert sum(m.get('sonic_jobs_finished_total{reason="",state="done"}', 0) for m in scraped) == 12
    assert {m[f'sonic_host_healthy{{host="{h.url}"}}'] for m, h in zip(scraped, (h1, h2), strict=True)} == {
        1.0
    }

    status = fleet.cli("status", "--db", fleet.db_url, "--batch", "b1", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["states"] == {"done": 12}
    report = fleet.cli("report", "--db", fleet.db_url, "--batch", "b1", "--json")
    assert report.returncode == 0, report.stderr
    assert len(json.loads(report.stdout)["jobs"]) == 12


def test_publishing_the_same_manifest_again_makes_no_second_job(fleet, hosts):
    (h1,) = hosts(1, run_seconds=0.05)
    workflow, manifest = fleet.inputs(h1.url, 4)
    fleet.worker(h1.url)
    assert fleet.batch(workflow, manifest).returncode == 0

    again = fleet.batch(workflow, manifest)
    assert again.returncode == 2 and "already in the job store" in again.stderr and "--resume" in again.stderr

    resumed = fleet.batch(workflow, manifest, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "4 job(s)" in resumed.stderr and "0 published" in resumed.stderr
    assert len(h1.executions) == 4


def test_a_row_with_a_missing_file_is_dead_at_publish_time_and_the_rest_go_on(fleet, hosts):
    (h1,) = hosts(1, run_seconds=0.05)
    workflow, manifest = fleet.inputs(h1.url, 3, extra_rows=f"ghost,{fleet.root}/nope.png,x.wav,P1,1\n")
    fleet.worker(h1.url)

    result = fleet.batch(workflow, manifest)

    assert result.returncode == 1
    assert "dead: ghost (row 4): " in result.stderr and "nope.png not found" in result.stderr, result.stderr
    with fleet.store() as store:
        states = {j.spec.get("name", j.job_id): j.state for j in store.jobs(batch="b1")}
    assert states == {"clip000": "done", "clip001": "done", "clip002": "done", "ghost": "dead"}


def test_out_of_memory_goes_one_pool_lower_and_is_recorded(fleet, hosts):
    (h1,) = hosts(1, run_seconds=0.05)
    h1.set_faults(oom_above=512)
    workflow, manifest = fleet.inputs(h1.url, 1)
    fleet.worker(h1.url, extra=("--max-attempts", "3"))

    result = fleet.batch(workflow, manifest, "--set", "min_resolution=768")

    assert result.returncode == 0, result.stderr
    with fleet.store() as store:
        (job,) = store.jobs(batch="b1")
        attempts = store.attempts(job.job_id)
    assert job.state == "done" and job.resolution == 512
    assert any("out of memory at min_resolution=768; retrying at 512" in n for n in job.notes)
    assert [a["resolution"] for a in attempts] == [768, 512]
    assert [a["error_kind"] for a in attempts] == ["oom", None]


def test_bad_input_is_dead_at_once_with_the_hosts_message(fleet, hosts):
    (h1,) = hosts(1, run_seconds=0.05)
    h1.set_faults(input_error=1)
    workflow, manifest = fleet.inputs(h1.url, 1)
    fleet.worker(h1.url)

    result = fleet.batch(workflow, manifest)

    assert result.returncode == 1
    with fleet.store() as store:
        (job,) = store.jobs(batch="b1")
    assert job.state == "dead" and job.attempts == 1 and job.error_kind == "input"
    assert job.error in result.stderr


def test_the_broker_unreachable_at_start_is_one_line_and_exit_2(fleet, hosts, tmp_path):
    (h1,) = hosts(1)
    workflow, manifest = fleet.inputs(h1.url, 1)
    dead_broker = "amqp://guest:guest@127.0.0.1:9//"
    for argv in (
        ["worker", "--broker", dead_broker, "--db", fleet.db_url, "--host", h1.url],
        [
            "batch",
            str(workflow),
            str(manifest),
            "--out",
            str(tmp_path / "o"),
            "--broker",
            dead_broker,
            "--db",
            fleet.db_url,
        ],
    ):
        result = fleet.cli(*argv)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "broker amqp://***@127.0.0.1:9// is unreachable" in line and "check --broker" in line


def test_the_database_unreachable_at_start_is_one_line_and_exit_2(fleet, hosts):
    (h1,) = hosts(1)
    result = fleet.cli(
        "worker",
        "--broker",
        fleet.broker_url,
        "--db",
        "postgresql+psycopg://sonic@127.0.0.1:9/sonic",
        "--host",
        h1.url,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "database postgresql+psycopg://***@127.0.0.1:9/sonic is unreachable" in line and "--db" in line


def test_a_worker_refuses_a_host_without_our_nodes(fleet, tmp_path):
    bare = FakeComfy(tmp_path / "bare", object_info=core_nodes([])).start()  # a plain ComfyUI
    try:
        proc = fleet.worker(bare.url)
        assert proc.wait(60) == 2
        log = fleet.log(0)
        assert "lacks our nodes (SONIC_ModelLoader" in log and "install ComfyUI-Sonic there" in log
    finally:
        bare.stop()


def test_a_host_without_the_weights_hands_its_job_back_and_the_worker_stops(fleet, hosts):
    good, weightless = hosts(2, run_seconds=0.05)
    weightless.set_faults(model_missing=True)
    workflow, manifest = fleet.inputs(good.url, 1)
    refusing = fleet.worker(weightless.url)  # the only worker when the job is published
    follower = fleet.follow(workflow, manifest)

    assert refusing.wait(60) == 2
    assert "cannot run job" in fleet.log(0) and "not consuming" in fleet.log(0)
    fleet.worker(good.url)
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    with fleet.store() as store:
        (job,) = store.jobs(batch="b1")
        attempts = store.attempts(job.job_id)
    assert job.state == "done" and attempts[0]["error_kind"] == "host_config"


def test_messages_a_worker_cannot_read_are_dead_lettered_and_the_worker_goes_on(fleet, hosts):
    # A newer schema, a body that is not JSON, a pickle: each goes to the dead-letter queue with
    # its reason; none stops the worker (or, handed back, the next worker of the pool).
    from comfyui_sonic.runner.fleet import dlq
    from comfyui_sonic.runner.fleet.queues import JOBS_EXCHANGE, declare_topology, queue_name

    (h1,) = hosts(1, run_seconds=0.05)
    declare_topology(fleet.broker_url)
    with Connection(fleet.broker_url) as conn:
        producer = conn.Producer()
        to_pool = {"exchange": JOBS_EXCHANGE, "routing_key": queue_name(512), "delivery_mode": 2}
        producer.publish({"v": 99, "job_id": "from-the-future"}, serializer="json", **to_pool)
        producer.publish(b"{not json", content_type="application/json", content_encoding="utf-8", **to_pool)
        producer.publish({"job_id": "pickled"}, serializer="pickle", **to_pool)
    workflow, manifest = fleet.inputs(h1.url, 2)
    worker = fleet.worker(h1.url)

    result = fleet.batch(workflow, manifest)

    assert result.returncode == 0, result.stderr
    assert worker.poll() is None  # still consuming
    reasons = sorted(dead.reason for dead in dlq.list_dead(fleet.broker_url))
    assert len(reasons) == 3, reasons
    assert "cannot decode the message (application/json)" in reasons[0]
    assert "cannot decode the message (application/x-python-serialize)" in reasons[1]
    assert "schema version 99 is not 1" in reasons[2]


def test_sigterm_finishes_the_running_job_and_exits_0(fleet, hosts):
    (h1,) = hosts(1, run_seconds=2.0)
    workflow, manifest = fleet.inputs(h1.url, 3)
    worker = fleet.worker(h1.url)
    follower = fleet.follow(workflow, manifest)
    with fleet.store() as store:
        wait_until(lambda: store.counts(batch="b1").get("running"), 30, "a running job")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        counts = store.counts(batch="b1")
    assert counts.get("done") == 1 and counts.get("queued") == 2  # finished its job, took no other
    assert "stopping: waiting up to" in fleet.log(0)
    fleet.worker(h1.url)
    follower.communicate(timeout=60)
    assert follower.returncode == 0


def test_a_draining_worker_keeps_its_jobs_leases_so_no_other_worker_takes_them_over(fleet, hosts):
    # SIGTERM with a job that runs 4 leases more: it finishes here. Had the leases lapsed during
    # the drain, the other worker would reap the job and follow its prompt a second time.
    (h1,) = hosts(1, run_seconds=12.0)
    workflow, manifest = fleet.inputs(h1.url, 1)
    draining = fleet.worker(h1.url)
    follower = fleet.follow(workflow, manifest)
    with fleet.store() as store:
        wait_until(lambda: store.counts(batch="b1").get("running"), 30, "the job running")
        fleet.worker(h1.url)  # the other worker: reaps expired leases every 3 s
        draining.send_signal(signal.SIGTERM)
        assert draining.wait(60) == 0
        follower.communicate(timeout=60)
        assert follower.returncode == 0
        check_exactly_once(store, h1.executions, 1)
    assert "stopped renewing" not in fleet.log(1)
    assert "another worker has it now" not in fleet.log(0)


def test_a_worker_killed_mid_job_is_taken_over_without_running_the_job_twice(fleet, hosts):
    (h1,) = hosts(1, run_seconds=3.0)
    workflow, manifest = fleet.inputs(h1.url, 1)
    doomed = fleet.worker(h1.url)
    follower = fleet.follow(workflow, manifest)
    with fleet.store() as store:
        wait_until(lambda: store.counts(batch="b1").get("running"), 30, "the job running")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        fleet.worker(h1.url)
        follower.communicate(timeout=60)
        assert follower.returncode == 0
        check_exactly_once(store, h1.executions, 1)
        (job,) = store.jobs(batch="b1")
    assert job.attempts == 1  # followed to its end on the host, not submitted again


def test_while_its_host_is_down_a_worker_takes_no_jobs(fleet, hosts):
    down, up = hosts(2, run_seconds=0.05)
    down.kill()
    workflow, manifest = fleet.inputs(up.url, 6)
    fleet.worker(down.url)
    fleet.worker(up.url)
    time.sleep(1.0)

    result = fleet.batch(workflow, manifest)

    assert result.returncode == 0, result.stderr
    assert len(up.executions) == 6
    assert "unreachable" in fleet.log(0) or "unhealthy" in fleet.log(0)


def test_a_worker_holds_one_job_per_host_across_all_its_pools(fleet, hosts):
    # One job in each pool the host serves. With --inflight 1 the worker must take the next only
    # after the last ended: jobs it held would wait in its host's ComfyUI queue while other hosts
    # sat idle (a prefetch per pool consumer let it take three at once).
    (h1,) = hosts(1, run_seconds=1.0)
    workflow, _ = fleet.inputs(h1.url, 0)
    face, speech = (fleet.root / "in" / name for name in ("face.png", "speech.wav"))
    manifest = fleet.root / "in" / "pools.csv"
    manifest.write_text(
        "id,image,audio,min_resolution\n"
        + "".join(f"r{res},{face},{speech},{res}\n" for res in (512, 768, 1024))
    )
    fleet.worker(h1.url)
    follower = fleet.follow(workflow, manifest)
    most_queued = 0  # prompts waiting behind a running one (a prompt just POSTed to an idle host
    while follower.poll() is None:  # sits in its queue for a moment too: that one is not counted)
        state = h1.state()
        if state["running"]:
            most_queued = max(most_queued, state["queued"])
        time.sleep(0.05)

    assert follower.returncode == 0, follower.stderr.read()
    assert len(h1.executions) == 3
    assert most_queued == 0  # never a second prompt waiting behind the running one


def test_a_hung_host_being_probed_does_not_hold_up_the_leases_of_running_jobs(tmp_path):
    # The keeper probes an unhealthy host with a long timeout; renewals on that thread waited
    # behind it, the running job's lease lapsed, and another worker took the job over.
    import threading

    from comfyui_sonic.runner.fleet.handler import HandlerConfig
    from comfyui_sonic.runner.fleet.worker import Worker, WorkerOptions
    from comfyui_sonic.runner.jobs import JobRecord
    from comfyui_sonic.runner.secrets import HostSpec
    from comfyui_sonic.runner.store import JobStore

    release = threading.Event()

    class Hung:
        def system_stats(self):
            release.wait(10)  # a host that accepted the connection and answers nothing

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}", record_events=True)
    config = HandlerConfig(worker="w1", work_dir=tmp_path, templates_dir=tmp_path, lease_s=1.0)
    options = WorkerOptions(keeper_interval=0.1, reap_interval=60)
    worker = Worker("amqp://unused", store, [HostSpec("http://127.0.0.1:9")], config, None, options,
                    make_client=lambda spec: Hung())  # fmt: skip
    worker.slots[0].healthy = False
    job = JobRecord(job_id="j1", row=0, spec={})
    store.add_jobs([job])
    store.take(job, "w1", lease_s=1.0)
    worker.active.add("j1")
    threads = [threading.Thread(target=t, daemon=True) for t in (worker._renewer, worker._keeper)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(15):  # 3 s: three leases, all of it with the probe hanging
            time.sleep(0.2)
            assert store.holder("j1")[1] > time.time(), "the lease lapsed while a probe hung"
    finally:
        worker._keeper_done.set()
        release.set()
        for thread in threads:
            thread.join(15)
        store.close()
