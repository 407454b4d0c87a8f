"""The journal: WAL SQLite, state changes committed before they take effect, no secrets stored."""

from __future__ import annotations

import sqlite3
import time

import pytest
from comfyui_sonic.runner.jobs import InvalidTransition, JobRecord
from comfyui_sonic.runner.journal import Journal, JournalError, open_existing


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite") as j:
        yield j


def make_jobs(n):
    return [
        JobRecord(job_id=f"row{i:05d}", row=i, spec={"image": "a.png", "audio": "a.wav", "params": {}})
        for i in range(1, n + 1)
    ]


def test_wal_mode_and_round_trip(journal, tmp_path):
    journal.set_meta({"workflow_path": "/w.json", "workflow_hash": "abc", "created": 1.0})
    journal.add_jobs(make_jobs(3))
    assert journal.meta()["workflow_hash"] == "abc"
    mode = sqlite3.connect(tmp_path / "j.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    jobs = journal.jobs()
    assert [j.job_id for j in jobs] == ["row00001", "row00002", "row00003"]
    assert jobs[0].spec["image"] == "a.png" and jobs[0].state == "queued"


def test_an_attempt_is_committed_before_anything_else_sees_it(journal, tmp_path):
    journal.add_jobs(make_jobs(1))
    job = journal.jobs()[0]
    journal.transition(job, "uploading", host="http://h:1")
    journal.start_attempt(job, "http://h:1", "pid-1", "cid-1", 512)
    # A second, independent connection (a runner started after kill -9) sees it already.
    other = Journal(tmp_path / "j.sqlite")
    (seen,) = other.on_host_jobs()
    assert (seen.state, seen.prompt_id, seen.attempts, seen.host) == ("submitted", "pid-1", 1, "http://h:1")
    assert other.attempt("row00001", 1)["client_id"] == "cid-1"
    other.close()


def test_attempt_rows_follow_the_job(journal):
    journal.add_jobs(make_jobs(1))
    job = journal.jobs()[0]
    journal.transition(job, "uploading")
    journal.start_attempt(job, "http://h:1", "p1", "c1", 768)
    journal.transition(
        job,
        "failed",
        attempt_state="failed",
        error="oom",
        error_kind="oom",
        resolution=512,
        next_attempt_at=time.time(),
    )
    journal.transition(job, "queued")
    journal.transition(job, "uploading")
    journal.start_attempt(job, "http://h:2", "p2", "c2", 512)
    journal.transition(job, "running", attempt_state="running", started_at=time.time())
    journal.transition(job, "fetching", attempt_state="fetching")
    journal.transition(
        job, "done", attempt_state="done", outputs=["/out/row00001.mp4"], finished_at=time.time()
    )
    attempts = journal.attempts("row00001")
    assert [(a["attempt"], a["host"], a["resolution"], a["state"]) for a in attempts] == [
        (1, "http://h:1", 768, "failed"),
        (2, "http://h:2", 512, "done"),
    ]
    assert attempts[0]["error_kind"] == "oom" and attempts[1]["started_at"] is not None
    assert journal.job("row00001").outputs == ["/out/row00001.mp4"]
    assert journal.counts() == {"done": 1}
    assert journal.counts_by_host() == {"http://h:1": {"failed": 1}, "http://h:2": {"done": 1}}


def test_an_illegal_transition_changes_nothing(journal):
    journal.add_jobs(make_jobs(1))
    job = journal.jobs()[0]
    with pytest.raises(InvalidTransition):
        journal.transition(job, "done")
    assert job.state == "queued" and journal.job(job.job_id).state == "queued"


def test_secrets_never_reach_the_file(tmp_path):
    secret = "s3cr3t-token"
    path = tmp_path / "j.sqlite"
    with Journal(path, redact=lambda t: t.replace(secret, "***")) as journal:
        journal.add_jobs(make_jobs(1))
        job = journal.jobs()[0]
        journal.transition(job, "uploading", host="https://user:pw@gpu.example:8188")
        journal.start_attempt(job, "https://user:pw@gpu.example:8188", "p", "c", None)
        journal.transition(
            job,
            "failed",
            attempt_state="failed",
            error=f"401 from https://bob:{secret}@gpu.example with token {secret}",
        )
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw and b"user:pw" not in raw and b"bob:" not in raw
    assert b"https://gpu.example:8188" in raw


def test_ten_thousand_jobs_load_fast(tmp_path):
    with Journal(tmp_path / "big.sqlite") as journal:
        t0 = time.perf_counter()
        journal.add_jobs(make_jobs(10_000))
        added = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert len(journal.jobs(["queued"])) == 10_000
        loaded = time.perf_counter() - t0
    print(f"add 10k: {added:.3f}s load 10k: {loaded:.3f}s")


def test_status_of_a_missing_journal_is_a_clear_error(tmp_path):
    with pytest.raises(JournalError, match="no such file"):
        open_existing(tmp_path / "nope.sqlite")


def test_only_the_submission_commit_pays_for_an_fsync(journal):
    journal.add_jobs(make_jobs(1))
    job = journal.jobs()[0]
    journal.transition(job, "uploading")
    statements = []
    journal._db.set_trace_callback(statements.append)
    journal.start_attempt(job, "http://h:1", "p", "c", None)
    journal.transition(job, "running", attempt_state="running")
    journal._db.set_trace_callback(None)
    pragmas = [s for s in statements if s.startswith(("PRAGMA", "BEGIN", "COMMIT"))]
    assert pragmas == [
        "PRAGMA synchronous=FULL",
        "BEGIN IMMEDIATE",
        "COMMIT",
        "PRAGMA synchronous=NORMAL",
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]


# ---------------------------------------------------------------------- one writer per journal
HOLD = """
import sys, time
from comfyui_sonic.runner.journal import Journal
Journal(sys.argv[1], writer=True)
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_at_once_naming_the_holder_and_a_kill_9_frees_the_journal(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from comfyui_sonic.runner.journal import JournalLockedError

    path = tmp_path / "journal.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        size = path.stat().st_size
        started = time.monotonic()
        with pytest.raises(JournalLockedError) as err:
            Journal(path, writer=True)
        assert time.monotonic() - started < 1.0  # refused at once, never waits
        message = str(err.value)
        assert str(path) in message and f"process {holder.pid}" in message and "\n" not in message
        assert path.stat().st_size == size  # the refused writer wrote nothing
        with open_existing(path) as reader:  # readers (status, report) never need the lock
            assert reader.counts() == {}
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    with Journal(path, writer=True):  # the kernel released it: no stale lock
        assert (tmp_path / "journal.sqlite.lock").read_text().strip() == str(os.getpid())
    with Journal(path, writer=True):  # and close() released it again
        pass
