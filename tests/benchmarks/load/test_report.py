"""The load report from a run's files: per-step numbers, the knee, soak growth, the verdict, --compare."""

from __future__ import annotations

import csv
import json

from comfyui_sonic.runner.jobs import JobRecord

from benchmarks.load import report
from benchmarks.load.accounting import handover_seconds, simulator_check, tally


def fake_run(folder, slow_from_step: int, name="run", errors_in_step: int | None = None, ends: bool = True):
    """Files of a 3-step run (10 s each, 1/2/4 users): submit latency jumps at ``slow_from_step``."""
    folder.mkdir()
    t0 = 1000.0
    steps = [{"index": i, "users": 2**i, "start_s": 10.0 * i, "end_s": 10.0 * (i + 1)} for i in range(3)]
    lines = [{"ev": "start", "t": t0, "steps": steps}]
    n = 0
    for step in steps:
        for k in range(step["users"] * 10):
            n += 1
            t = t0 + step["start_s"] + k * 10 / (step["users"] * 10)
            slow = step["index"] >= slow_from_step
            rec = {
                "ev": "submit",
                "t": t,
                "step": step["index"],
                "submit_ms": 900.0 if slow else 40.0,
                "code": 202,
                "id": f"j{n}",
            }
            if errors_in_step == step["index"] and k == 0:
                rec = {**rec, "code": 502, "error": "502:nginx"}
                rec.pop("id")
            lines.append(rec)
            if "id" in rec and ends:
                lines.append(
                    {
                        "ev": "end",
                        "id": rec["id"],
                        "t_submit": t,
                        "step": step["index"],
                        "state": "done",
                        "e2e_s": 2.0,
                    }
                )
    (folder / "jobs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (folder / "config.json").write_text(
        json.dumps({"mode": name, "p99_ms": 250, "max_errors": 0.01, "started": t0})
    )
    with (folder / "resources.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t", "name", "kind", "rss_mb", "cpu_pct", "fds", "procs"])
        for i in range(30):
            w.writerow([t0 + i, "api-1", "api", 100 + i * 0.01, 50, 20, 1])
    return folder


def test_the_knee_is_the_first_step_out_of_bounds(tmp_path):
    summary = report.build(fake_run(tmp_path / "a", slow_from_step=2))
    assert summary["knee"]["step"] == 2 and "p99 submit 900 ms > 250 ms" in summary["knee"]["why"]
    assert summary["knee"]["last_good"] == {"step": 1, "users": 2, "submit_rate": 2.0}
    rows = summary["steps"]
    assert [r["accepted"] for r in rows] == [10, 20, 40]
    assert rows[0]["submit_ms"]["p99"] == 40 and rows[0]["cpu_pct"] == {"api": 50}
    page = (tmp_path / "a" / "report.md").read_text()
    assert "**Knee: step 2**" in page and "charts/latency.png" in page
    assert (tmp_path / "a" / "charts" / "latency.png").stat().st_size > 1000


def test_with_no_job_ended_the_end_to_end_latencies_are_dashes_not_zeros(tmp_path):
    # API only: nothing renders, so no job ends; a percentile of no values is no number.
    summary = report.build(fake_run(tmp_path / "api", slow_from_step=9, ends=False))
    assert all(r["e2e_s"]["n"] == 0 for r in summary["steps"])
    rows = [
        line for line in (tmp_path / "api" / "report.md").read_text().splitlines() if line.startswith("| 0 |")
    ]
    assert rows[0].split(" | ")[4:7] == ["40 / 40 / 40", "-", "-"]


def test_errors_move_the_knee_and_fail_a_smoke_run(tmp_path):
    summary = report.build(fake_run(tmp_path / "s", slow_from_step=9, name="smoke", errors_in_step=1))
    assert summary["steps"][1]["errors"] == {"502:nginx": 1}
    assert summary["knee"]["step"] == 1 and "errors 5.0%" in summary["knee"]["why"]
    assert not summary["verdict"]["ok"] and "502:nginx" in summary["verdict"]["problems"][0]


def test_compare_puts_two_runs_side_by_side(tmp_path):
    report.build(fake_run(tmp_path / "old", slow_from_step=1))
    report.build(fake_run(tmp_path / "new", slow_from_step=2))
    text = report.compare(tmp_path / "old", tmp_path / "new")
    assert "| 1 | 2 -> 2 | 2.0 -> 2.0 | 900 -> 40 |" in text
    assert "knee: step 1 (2 users) -> step 2 (4 users)" in text
    assert report.main(["--compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "compare-old.md").exists()


def test_soak_flags_a_component_whose_memory_keeps_growing():
    rows = []
    for i in range(200):
        rows.append({"t": i * 2.0, "name": "api-1", "kind": "api", "rss_mb": 200 + (i % 3), "fds": 30})
        rows.append({"t": i * 2.0, "name": "worker-1", "kind": "worker", "rss_mb": 100 + i * 0.2, "fds": 12})
        rows.append(
            {"t": i * 2.0, "name": "postgres", "kind": "postgres", "rss_mb": 100 + i * 0.2, "fds": 12}
        )
        rows.append({"t": i * 2.0, "name": "locust", "kind": "load", "rss_mb": 70, "fds": 30 + i})
    storage = [
        {"db_mb": "10", "objects": "0", "bucket_mb": "0"},
        {"db_mb": "12", "objects": "300", "bucket_mb": "3"},
    ]
    soak = report.soak_analysis(rows, storage, accepted=100, max_growth=0.05)
    assert soak["leaks"] == ["worker-1"]  # PostgreSQL grows as much, but its buffers follow its data
    assert soak["components"]["postgres"]["judged"] is False
    assert soak["components"]["locust"]["judged"] is False  # the clients, not the service
    assert abs(soak["components"]["api-1"]["growth"]) < 0.01
    assert soak["db_kb_per_job"] == 2 * 1024 / 100 and soak["bucket_objects"] == [0, 300]


def test_accounting_finds_lost_and_duplicated_jobs():
    jobs = {
        "a": JobRecord("a", 0, state="done"),
        "b": JobRecord("b", 0, state="done"),
        "c": JobRecord("c", 0, state="queued"),
        "x": JobRecord("x", 0, state="queued"),  # stored, but the client got an error answer
    }
    attempts = [
        {"job_id": "a", "state": "done"},
        {"job_id": "b", "state": "failed"},
        {"job_id": "b", "state": "done"},
        {"job_id": "b", "state": "done"},
    ]
    result = tally(["a", "b", "c", "gone"], jobs, attempts, {"a": 1}, ["p1", "p2", "p2"])
    assert result["lost"] == 2  # "gone" is not in the store; "b" is done without an output
    assert set(result["lost_ids"]) == {"gone", "b"}
    assert result["unfinished"] == 1 and result["retried_jobs"] == 1
    assert result["orphans"] == 1 and result["orphan_states"] == {"queued": 1}
    assert result["duplicated"] == 2  # b done twice, prompt p2 executed twice
    clean = tally(["a"], jobs, attempts[:1], {"a": 1}, ["p1"])
    assert clean["lost"] == 0 and clean["duplicated"] == 0


def test_simulator_check_replays_the_measured_trace():
    # One renderer, jobs of 4 s every 2 s for 20 jobs: the measured waits follow the queue exactly.
    rows, wait, free_at = [], 0.0, 0.0
    for i in range(20):
        t = 2.0 * i
        start = max(t, free_at)
        free_at = start + 4.0
        rows.append(
            {"t": t, "priority": 1, "tier": "fast", "audio_s": 1.0, "job_s": 4.0, "wait_s": start - t}
        )
        wait += start - t
    check = simulator_check(rows, renderers=1)
    assert check["measured_mean_s"] == wait / 20
    assert check["relative_error"] < 1e-9 and check["within_15pct"]


def test_the_replay_adds_the_hosts_hand_over_between_jobs():
    # One host that needs 0.5 s after each job before it takes the next: jobs of 4 s every 4 s
    # queue up behind it, which a replay of the 4 s alone would not show.
    rows, free_at = [], 0.0
    for i in range(20):
        t = 4.0 * i
        start = max(t, free_at)
        free_at = start + 4.0 + 0.5
        rows.append({"t": t, "priority": 1, "tier": "fast", "audio_s": 1.0, "job_s": 4.0,
                     "wait_s": start - t, "host": "h1"})  # fmt: skip
    assert abs(handover_seconds(rows) - 0.5) < 1e-9
    check = simulator_check(rows, renderers=1)
    assert check["measured_mean_s"] > 2.0 and check["relative_error"] < 1e-9
    # An idle host's pause is no hand-over: a job that arrives after the last one ended.
    idle = [dict(r, t=10.0 * i, wait_s=0.0) for i, r in enumerate(rows)]
    assert handover_seconds(idle) == 0.0


def test_fault_effects_show_errors_and_recovery():
    t0 = 0.0
    # one completion a second, none from 100 s to 120 s (a fault at 100 s), then back
    trace = [
        {"t": str(s), "wait_s": "0", "job_s": "0", "state": "done"}
        for s in range(60, 180)
        if not 100 <= s < 120
    ]
    records = [
        {"ev": "submit", "t": 101.0, "error": "502:nginx"},
        {"ev": "submit", "t": 150.0, "error": "502:nginx"},
    ]
    (effect,) = report.fault_effects([{"t": 100.0, "fault": "stop-replica@100:20"}], records, trace, t0)
    assert effect["errors_after"] == {"502:nginx": 1} and effect["completed_per_s_before"] == 1.0
    assert 10 <= effect["recovery_s"] <= 20


def test_a_faults_errors_stop_where_the_next_fault_begins():
    # A worker killed at 60 s, the broker restarted at 90 s: the 503s at 90 s are the broker's.
    faults = [{"t": 60.0, "fault": "kill-worker@60"}, {"t": 90.0, "fault": "restart-broker@90"}]
    records = [{"ev": "submit", "t": t, "error": "503:broker_unavailable"} for t in (89.5, 90.1, 90.2)]
    records.append(
        {"ev": "submit", "t": 89.8, "submit_ms": 4800.0, "error": "503:broker_unavailable"}
    )  # sent before
    worker, broker = report.fault_effects(faults, records, [], 0.0)
    assert worker["errors_after"] == {"503:broker_unavailable": 1} and worker["errors_window_s"] == 30.0
    assert broker["errors_after"] == {"503:broker_unavailable": 3}
