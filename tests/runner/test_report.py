"""The batch report: every job accounted for, latency percentiles, a readable table."""

from __future__ import annotations

import json

import pytest
from comfyui_sonic.runner.jobs import JobRecord
from comfyui_sonic.runner.report import build_report, percentile, render_table

T0 = 1_700_000_000.0


def finished_job(n: int, host: str, latency: float, attempts: int = 1) -> JobRecord:
    submitted = T0 + n
    return JobRecord(
        job_id=f"job{n:03d}",
        row=n,
        state="done",
        host=host,
        attempts=attempts,
        resolution=512,
        outputs=[f"out/job{n:03d}.mp4"],
        created_at=T0,
        submitted_at=submitted,
        started_at=submitted + 0.1,
        finished_at=submitted + latency,
        queued_seconds=0.1,
        run_seconds=latency - 0.3,
        download_seconds=0.2,
    )


def batch() -> list[JobRecord]:
    """100 jobs over two hosts with latencies 1..100 s, one retried, plus a dead one and a queued one."""
    jobs = [finished_job(n, "gpu1" if n % 2 else "gpu2", float(n)) for n in range(1, 101)]
    jobs[0].attempts = 2
    jobs[0].notes = ["attempt 1 on gpu2: connection lost; retried"]
    jobs.append(
        JobRecord(
            job_id="noface",
            row=101,
            state="dead",
            host="gpu1",
            attempts=1,
            error="image: no face found; use a photo with one visible face",
            error_kind="input",
            submitted_at=T0,
            finished_at=T0 + 3,
        )
    )
    jobs.append(JobRecord(job_id="waiting", row=102, state="queued"))
    return jobs


def test_percentiles_interpolate_between_ranks():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)


def test_the_summary_counts_states_hosts_and_attempts():
    report = build_report(batch(), started_at=T0, finished_at=T0 + 200)
    summary = report["summary"]
    assert summary["total"] == 102
    assert summary["by_state"] == {"queued": 1, "done": 100, "dead": 1}
    assert summary["by_host"]["gpu1"] == {"done": 50, "dead": 1, "attempts": 52}
    assert summary["by_host"]["gpu2"] == {"done": 50, "attempts": 50}
    assert summary["by_host"]["-"] == {"queued": 1, "attempts": 0}
    assert summary["attempts"] == 102 and summary["retried_jobs"] == 1
    assert summary["throughput_jobs_per_s"] == pytest.approx(100 / 200)


def test_latency_is_submitted_to_finished_over_done_jobs():
    summary = build_report(batch(), started_at=T0, finished_at=T0 + 200)["summary"]
    latency = summary["latency_seconds"]
    assert latency["count"] == 100
    assert latency["p50"] == pytest.approx(50.5)
    assert latency["p95"] == pytest.approx(95.05)
    assert latency["p99"] == pytest.approx(99.01)
    assert latency["max"] == 100.0
    assert summary["download_seconds"]["p50"] == pytest.approx(0.2)
    assert summary["run_seconds"]["p50"] == pytest.approx(50.2)


def test_every_job_has_a_row_with_status_host_attempts_timings_output_and_error():
    report = build_report(batch(), started_at=T0, finished_at=T0 + 200)
    rows = {r["job_id"]: r for r in report["jobs"]}
    assert len(rows) == 102
    first = rows["job001"]
    assert first["state"] == "done" and first["host"] == "gpu1" and first["attempts"] == 2
    assert first["latency_seconds"] == pytest.approx(1.0)
    assert first["outputs"] == ["out/job001.mp4"] and first["priority"] == "P1"
    assert first["notes"] == ["attempt 1 on gpu2: connection lost; retried"]
    assert rows["noface"]["error_kind"] == "input" and "no face" in rows["noface"]["error"]
    assert rows["waiting"]["latency_seconds"] is None
    # the report is plain JSON
    assert json.loads(json.dumps(report)) == report


def test_an_empty_batch_still_reports():
    report = build_report([], started_at=T0, finished_at=T0)
    assert report["summary"]["total"] == 0 and report["summary"]["throughput_jobs_per_s"] is None
    assert "0 jobs: no jobs" in render_table(report)


def test_the_table_reads_well_and_puts_problems_first():
    text = render_table(build_report(batch(), started_at=T0, finished_at=T0 + 200), max_rows=5)
    assert "102 jobs: 1 queued, 100 done, 1 dead in 3.3m (0.50 jobs/s, 102 attempts, 1 jobs retried)" in text
    assert "│ end to end │ 50.5s │ 95.0s │ 99.0s │ 50.5s │ 100.0s │" in text
    lines = text.splitlines()
    job_lines = [line for line in lines if "noface" in line or "waiting" in line or "job0" in line]
    assert "noface" in job_lines[0] and "no face found" in text
    assert "waiting" in job_lines[1]
    assert "... 97 more jobs in the JSON report" in text
    assert "\x1b[" not in text  # no colour codes in a file or a CI log


def test_every_attempt_is_accounted_for_when_the_journal_gives_them():
    jobs = batch()
    attempts = [
        {"job_id": j.job_id, "attempt": 1, "host": j.host, "state": j.state, "error": j.error}
        for j in jobs
        if j.attempts
    ]
    attempts[0] = {
        **attempts[0],
        "host": "gpu2",
        "state": "lost",
        "error": "host restarted",
        "error_kind": "restart",
    }
    attempts.insert(1, {"job_id": "job001", "attempt": 2, "host": "gpu1", "state": "done", "error": None})
    report = build_report(jobs, started_at=T0, finished_at=T0 + 200, attempts=attempts)
    summary = report["summary"]
    assert summary["attempts_recorded"] == summary["attempts"] == 102
    assert summary["attempts_by_host"] == {"gpu1": {"done": 50, "dead": 1}, "gpu2": {"lost": 1, "done": 50}}
    text = render_table(report)
    assert "Attempts (102 recorded)" in text
    lost = next(line for line in text.splitlines() if "host restarted" in line)
    assert "job001" in lost and "gpu2" in lost and "lost" in lost and "restart" in lost


def test_the_table_names_hosts_and_lists_excluded_ones():
    jobs = [finished_job(1, "http://10.0.0.5:8188", 2.0), finished_job(2, "http://10.0.0.6:8188", 3.0)]
    attempts = [{"job_id": "job001", "attempt": 1, "host": "http://10.0.0.5:8188", "state": "done"}]
    report = build_report(
        jobs,
        started_at=T0,
        finished_at=T0 + 10,
        attempts=attempts,
        host_names={"http://10.0.0.5:8188": "gpu1", "http://10.0.0.6:8188": "10.0.0.6:8188"},
        excluded_hosts={"http://10.0.0.6:8188": "SonicModelError: weights missing"},
    )
    rows = {r["job_id"]: r for r in report["jobs"]}
    assert rows["job001"]["host"] == "http://10.0.0.5:8188" and rows["job001"]["host_name"] == "gpu1"
    assert list(report["summary"]["by_host"]) == [
        "http://10.0.0.5:8188",
        "http://10.0.0.6:8188",
    ]  # keyed by URL
    text = render_table(report, width=200)
    assert text.count("gpu1 (http://10.0.0.5:8188)") >= 3  # hosts, attempts and jobs tables
    assert "host http://10.0.0.6:8188 was excluded (it cannot run this workflow): SonicModelError" in text
