"""kill -9 the runner at random moments, resume, and prove every job was done exactly once.

Real processes over real HTTP/websockets: three fake ComfyUI hosts (tests/fake_comfy) in
this process, and `python -m comfyui_sonic.runner batch ...` as a child that is killed with
SIGKILL several times, then resumed with --resume until it exits. One host dies for good
mid-run. The fake's `executions` probe (TEST-ONLY) lists every prompt a host started.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the fake server lives in tests/fake_comfy, imported from the repo root
    sys.path.insert(0, str(REPO))
from tests.fake_comfy import FakeComfy  # noqa: E402
from tests.fake_comfy.jobs import write_job_files  # noqa: E402


def make_inputs(folder: Path, url: str, rows: int) -> tuple[Path, Path]:
    workflow, _, _ = write_job_files(folder, url)
    manifest = folder / "batch.csv"
    lines = ["id,image,audio,priority,seed"]
    lines += [f"clip{i:03d},face.png,speech.wav,P{i % 3},{i}" for i in range(rows)]
    manifest.write_text("\n".join(lines) + "\n")
    return workflow, manifest


def runner_cmd(workflow, manifest, out, urls, *extra):
    argv = [
        sys.executable,
        "-m",
        "comfyui_sonic.runner",
        "batch",
        str(workflow),
        str(manifest),
        "--out",
        str(out),
        "--jsonl",
        "--poll-interval",
        "0.2",
        "--failover-grace",
        "1.5",
        "--timeout",
        "60",
    ]
    for url in urls:
        argv += ["--host", url]
    return argv + list(extra)


def journal_rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def check_exactly_once(journal: Path, hosts: list[FakeComfy], n_jobs: int) -> None:
    """Every job done with a decodable output; no prompt ran twice; no job ran again while an
    earlier attempt could still run (every earlier attempt ended, was lost or abandoned)."""
    import av

    jobs = journal_rows(journal, "SELECT job_id, state, outputs FROM jobs")
    assert len(jobs) == n_jobs
    assert {state for _, state, _ in jobs} == {"done"}, [j for j in jobs if j[1] != "done"]
    for _, _, outputs in jobs:
        (path,) = json.loads(outputs)
        assert Path(path).stat().st_size > 0
        with av.open(path) as container:
            assert next(container.decode(video=0)) is not None
    attempts = journal_rows(
        journal, "SELECT job_id, attempt, prompt_id, state FROM attempts ORDER BY job_id, attempt"
    )
    job_of = {pid: (job, n, state) for job, n, pid, state in attempts}
    executed = [pid for h in hosts for pid in h.executions]
    assert len(executed) == len(set(executed)), "a prompt was executed twice"
    assert set(executed) <= set(job_of), "a host executed a prompt the journal never recorded"
    by_job: dict[str, list[tuple[int, str]]] = {}
    for pid in executed:
        job, n, state = job_of[pid]
        by_job.setdefault(job, []).append((n, state))
    for job, runs in by_job.items():
        runs.sort()
        for _n, state in runs[:-1]:  # earlier executed attempts must have been settled before the next one
            assert state in ("failed", "lost", "abandoned", "cancelled"), (job, runs)
    done = [a for a in attempts if a[3] == "done"]
    assert sorted(a[0] for a in done) == sorted(j for j, _, _ in jobs), "a job has two done attempts"


@pytest.mark.timeout(120)
def test_kill_9_and_resume_many_times_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("SONIC_KILL_SEED", "5")))
    n_jobs = int(os.environ.get("SONIC_KILL_JOBS", "60"))
    hosts = [FakeComfy(tmp_path / f"host{i}", run_seconds=0.2).start() for i in range(3)]
    try:
        urls = [h.url for h in hosts]
        workflow, manifest = make_inputs(tmp_path / "in", urls[0], n_jobs)
        out = tmp_path / "out"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        kills = 0
        for round_ in range(4):
            extra = ["--resume"] if round_ else []
            proc = subprocess.Popen(
                runner_cmd(workflow, manifest, out, urls, *extra),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            time.sleep(rng.uniform(0.7, 1.6))
            if round_ == 1:
                hosts[2].kill()  # a host dies for good in the middle of the batch
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(10)
        final = subprocess.run(
            runner_cmd(workflow, manifest, out, urls, "--resume"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )
        assert final.returncode == 0, final.stderr[-2000:]
        assert kills >= 2
        check_exactly_once(out / "journal.sqlite", hosts, n_jobs)
        states = journal_rows(
            out / "journal.sqlite", "SELECT host, state, COUNT(*) FROM attempts GROUP BY host, state"
        )
        print(f"kills={kills} attempts={states} executions={[len(h.executions) for h in hosts]}")
        assert any(h == urls[2] for h, _, _ in states)  # the host that died had taken work
        report = subprocess.run(
            [sys.executable, "-m", "comfyui_sonic.runner", "report", str(out / "journal.sqlite"), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        attempts = json.loads(report.stdout)["attempts"]
        assert len(attempts) == sum(n for _, _, n in states)  # the report accounts for every attempt
    finally:
        for h in hosts:
            h.stop()


@pytest.mark.timeout(60)
def test_a_host_that_dies_mid_job_and_comes_back_empty_reruns_that_job_once(tmp_path):
    from comfyui_sonic.runner.cli import main

    with FakeComfy(
        tmp_path / "host", run_seconds=0.2, auto_revive_after=0.3, faults={"die_mid_job": 1}
    ) as host:
        workflow, manifest = make_inputs(tmp_path / "in", host.url, 4)
        out = tmp_path / "out"
        code = main(
            [
                "batch",
                str(workflow),
                str(manifest),
                "--host",
                host.url,
                "--out",
                str(out),
                "--quiet",
                "--poll-interval",
                "0.2",
                "--failover-grace",
                "10",
                "--inflight",
                "1",
            ]
        )
        assert code == 0
        check_exactly_once(out / "journal.sqlite", [host], 4)
        states = journal_rows(out / "journal.sqlite", "SELECT state, COUNT(*) FROM attempts GROUP BY state")
    assert dict(states) == {"done": 4, "lost": 1}  # the host lost the prompt; it ran again, once


def fake_batch(tmp_path: Path, hosts: list[FakeComfy], rows: int, sinks=(), resume: bool = False):
    """A Batch over real HTTP/websockets to the fake hosts (inputs made against the first one)."""
    from comfyui_sonic.runner.batch import Batch, BatchConfig
    from comfyui_sonic.runner.secrets import HostSpec

    folder = tmp_path / "in"
    if (folder / "batch.csv").exists():
        workflow, manifest = folder / "sonic_api.json", folder / "batch.csv"
    else:
        workflow, manifest = make_inputs(folder, hosts[0].url, rows)
    cfg = BatchConfig(
        workflow_path=workflow,
        out_dir=tmp_path / "out",
        hosts=[HostSpec(url=h.url) for h in hosts],
        manifest_path=manifest,
        resume=resume,
        inflight=1,
        poll_interval=0.2,
        failover_grace=5.0,
        health_backoff_base=0.1,
    )
    batch = Batch(cfg, sinks=sinks)
    batch.open()
    return batch


@pytest.mark.timeout(60)
def test_a_host_restarted_with_an_empty_input_folder_between_two_jobs_gets_the_inputs_again(tmp_path):
    with FakeComfy(tmp_path / "host", run_seconds=0.05) as host:
        restarted: list[str] = []

        def restart_after_the_first_job(event: dict) -> None:
            if event.get("event") == "job" and event["state"] == "done" and not restarted:
                restarted.append(event["job_id"])
                host.restart(wipe_inputs=True)  # a container restarted on fresh storage

        batch = fake_batch(tmp_path, [host], 2, sinks=[restart_after_the_first_job])
        assert batch.run() == 0
        check_exactly_once(tmp_path / "out" / "journal.sqlite", [host], 2)
        attempts = journal_rows(
            tmp_path / "out" / "journal.sqlite",
            "SELECT job_id, state, error_kind FROM attempts ORDER BY job_id, attempt",
        )
    second = [(state, kind) for job, state, kind in attempts if job != restarted[0]]
    # refused once (400: the files are gone), uploaded again, done - not dead, not counted
    assert second == [("failed", "stale_upload"), ("done", None)], second
    assert len(host.uploads) == 4  # image and audio, before and after the restart


@pytest.mark.timeout(60)
def test_resume_deletes_an_attempt_an_earlier_run_abandoned_while_it_still_waits_in_the_queue(tmp_path):
    import uuid
    from types import SimpleNamespace

    from comfyui_sonic.runner.client import ComfyClient
    from comfyui_sonic.runner.workflow import apply_params

    with (
        FakeComfy(tmp_path / "a", run_seconds=1.5) as a,
        FakeComfy(tmp_path / "b", run_seconds=0.05) as b,
    ):
        first = fake_batch(tmp_path, [a, b], 1)
        job = first.jobs["clip000"]
        client = ComfyClient(a.url)
        prompt = apply_params(
            first.template,
            {
                "image": client.upload(Path(job.spec["image"])),
                "audio": client.upload(Path(job.spec["audio"])),
            },
        )
        blocker = str(uuid.uuid4())
        client.submit(prompt, blocker, "someone-else")  # keeps `a` busy for 1.5 s
        abandoned = str(uuid.uuid4())
        first.journal.transition(job, "uploading", host=a.url)
        first.journal.start_attempt(job, a.url, abandoned, "cid", job.resolution)
        client.submit(prompt, abandoned, "cid")  # queued behind it when `a` became unreachable
        first.journal.transition(
            job, "failed", attempt_state="abandoned", error="host unreachable", error_kind="connection"
        )
        first.journal.close()  # ... and the runner was killed

        again = fake_batch(tmp_path, [a, b], 1, resume=True)
        assert again.run() == 0
        deadline = time.time() + 10
        while (a.queue or a.running) and time.time() < deadline:  # let `a` run whatever it still has
            time.sleep(0.1)
        assert blocker in a.executions and abandoned not in a.executions  # deleted before it could start
        ours_on_a = SimpleNamespace(executions=[p for p in a.executions if p != blocker])
        check_exactly_once(tmp_path / "out" / "journal.sqlite", [ours_on_a, b], 1)
        states = journal_rows(
            tmp_path / "out" / "journal.sqlite", "SELECT state FROM attempts ORDER BY attempt"
        )
    assert [s for (s,) in states] == ["cancelled", "done"]


@pytest.mark.timeout(120)
def test_a_second_runner_on_a_busy_journal_refuses_at_once_and_the_first_finishes_every_job(tmp_path):
    n_jobs = 8
    with FakeComfy(tmp_path / "host", run_seconds=0.3) as host:
        workflow, manifest = make_inputs(tmp_path / "in", host.url, n_jobs)
        out = tmp_path / "out"
        journal = out / "journal.sqlite"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        first = subprocess.Popen(
            runner_cmd(workflow, manifest, out, [host.url], "--inflight", "1"),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until the first runner is at work
                try:
                    if journal_rows(journal, "SELECT COUNT(*) FROM attempts")[0][0]:
                        break
                except sqlite3.Error:
                    pass
                time.sleep(0.05)
            started = time.monotonic()
            second = subprocess.run(
                runner_cmd(workflow, manifest, out, [host.url], "--resume"),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            refused_in = time.monotonic() - started
            assert first.poll() is None, "the first runner ended before the second one started"
            assert second.returncode == 75, second.stderr[-2000:]
            (line,) = second.stderr.strip().splitlines()
            assert str(journal) in line and f"process {first.pid}" in line
            assert refused_in < 10
            for command in (["status", str(journal)], ["report", str(journal), "--json"]):
                read = subprocess.run(
                    [sys.executable, "-m", "comfyui_sonic.runner", *command],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=30,
                )
                assert read.returncode == 0, read.stderr  # readers work while the runner holds the journal
            assert first.wait(90) == 0, first.stderr.read().decode()[-2000:]
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
        check_exactly_once(journal, [host], n_jobs)
        print(f"second runner refused in {refused_in:.2f} s")
