"""A small fleet on this machine for tests: fake ComfyUI hosts, `sonic-runner worker` processes,
`sonic-runner batch --broker` runs, over a private RabbitMQ and PostgreSQL (TEST-ONLY helpers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_comfy.jobs import write_job_files

REPO = Path(__file__).resolve().parents[3]
RUNNER = [sys.executable, "-m", "comfyui_sonic.runner"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


class Fleet:
    """Everything one test starts; ``close()`` stops what is still running."""

    def __init__(self, root: Path, broker_url: str, db_url: str) -> None:
        self.root = Path(root)
        self.broker_url = broker_url
        self.db_url = db_url
        self.workers: list[subprocess.Popen] = []
        self._logs: list[Path] = []

    # ------------------------------------------------------------------ inputs
    def inputs(self, host_url: str, rows: int, extra_rows: str = "") -> tuple[Path, Path]:
        """(workflow, manifest) of ``rows`` jobs over one face and one clip."""
        folder = self.root / "in"
        workflow, face, speech = write_job_files(folder, host_url)
        manifest = folder / "batch.csv"
        lines = ["id,image,audio,priority,seed"]
        lines += [f"clip{i:03d},{face},{speech},P{i % 3},{i}" for i in range(rows)]
        manifest.write_text("\n".join(lines) + "\n" + extra_rows)
        return workflow, manifest

    # ------------------------------------------------------------------ processes
    def worker(self, *host_urls: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        log = self.root / f"worker{len(self.workers)}.log"
        self._logs.append(log)
        argv = [*RUNNER, "worker", "--broker", self.broker_url, "--db", self.db_url]
        for url in host_urls:
            argv += ["--host", url]
        argv += ["--poll-interval", "0.2", "--lease", "3", "--failover-grace", "3", *extra]
        proc = subprocess.Popen(argv, env=ENV, cwd=self.root, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        self.workers.append(proc)
        return proc

    def batch_argv(self, workflow: Path, manifest: Path, *extra: str) -> list[str]:
        out = self.root / "out"
        return [
            *RUNNER,
            "batch",
            str(workflow),
            str(manifest),
            "--out",
            str(out),
            "--broker",
            self.broker_url,
            "--db",
            self.db_url,
            "--batch",
            "b1",
            "--jsonl",
            *extra,
        ]

    def batch(
        self, workflow: Path, manifest: Path, *extra: str, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.batch_argv(workflow, manifest, *extra),
            env=ENV,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def follow(self, workflow: Path, manifest: Path, *extra: str) -> subprocess.Popen:
        """``batch --broker`` in the background (publish, then follow): ``communicate()`` it."""
        return subprocess.Popen(
            self.batch_argv(workflow, manifest, *extra),
            env=ENV,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*RUNNER, *args], env=ENV, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )

    def log(self, index: int) -> str:
        return self._logs[index].read_text()

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    # ------------------------------------------------------------------ reading the store
    def store(self):
        from comfyui_sonic.runner.store import JobStore

        return JobStore(self.db_url)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def check_exactly_once(store, executions: list[str], n_jobs: int, batch: str = "b1") -> None:
    """Every job done once with a decodable output; no prompt executed twice; a job ran again only
    after its earlier attempt could no longer run (it ended, was lost, or was abandoned)."""
    import av

    jobs = store.jobs(batch=batch)
    assert len(jobs) == n_jobs
    assert {j.state for j in jobs} == {"done"}, [
        (j.job_id, j.state, j.error) for j in jobs if j.state != "done"
    ]
    for job in jobs:
        (path,) = job.outputs
        with av.open(path) as container:
            assert next(container.decode(video=0)) is not None
    attempts = [a for a in store.attempts() if a["job_id"].startswith(f"{batch}.")]
    job_of = {a["prompt_id"]: a for a in attempts}
    assert len(executions) == len(set(executions)), "a prompt was executed twice"
    assert set(executions) <= set(job_of), "a host executed a prompt the store never recorded"
    by_job: dict[str, list[dict]] = {}
    for pid in executions:
        by_job.setdefault(job_of[pid]["job_id"], []).append(job_of[pid])
    for job_id, runs in by_job.items():
        runs.sort(key=lambda a: a["attempt"])
        for earlier in runs[:-1]:
            assert earlier["state"] in ("failed", "lost", "abandoned"), (job_id, runs)
    done = sorted(a["job_id"] for a in attempts if a["state"] == "done")
    assert done == sorted(j.job_id for j in jobs), "a job has two done attempts"


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
