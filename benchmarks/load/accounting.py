"""After a run: was every accepted job accounted for, and did any run twice?

From the clients' own log (every 202 the load test received), the job store (each job's end
and attempts), the bucket (each done job's outputs) and, in fleet mode, the fake hosts'
execution probes (every prompt id a host ever started, across kills):

- lost: accepted by the API but not in the job store, or done without an output in the bucket;
- unfinished: still queued or running when the drain ended (not lost, but not proven either);
- orphans: jobs in the store that no client was told about (the API answered an error after
  storing the row): not lost to a client, but work nobody waits for, or a queue that never drains;
- duplicated: the same job id accepted twice, a job with two successful attempts, or a prompt id
  that started executing more than once on the hosts.

It also writes trace.csv (each job's arrival, priority, tier, clip length, service time and
measured wait) and replays it through the fleet simulator with as many renderers as the
stack had: the simulated waits must agree with the measured ones (issue 10 item 5).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path

from .jobs_log import read_jobs

EXECUTIONS_FILE = "_fake_executions.jsonl"


def write(out: Path, stack) -> dict:
    from comfyui_sonic.runner.store import JobStore

    records = list(read_jobs(out / "jobs.jsonl"))
    accepted = [r["id"] for r in records if r.get("ev") == "submit" and r.get("id")]
    with JobStore(stack.db_url) as store:
        jobs = {j.job_id: j for j in store.jobs()}
        attempts = store.attempts()
        cut_off = _cut_off_jobs(store, records)
    outputs = _bucket_outputs(stack)
    executions = _host_executions(out)
    result = tally(accepted, jobs, attempts, outputs, executions, cut_off)
    start = next(
        (r["t"] for r in records if r.get("ev") == "start"),
        min((j.created_at for j in jobs.values()), default=0),
    )
    rows = trace_rows(jobs, accepted, start)
    with (out / "trace.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["t", "priority", "tier", "audio_s", "job_s", "wait_s", "state", "host"])
        writer.writeheader()
        writer.writerows(rows)
    renderers = len(stack.hosts) * (stack.args.workers_per_host or 1) if stack.fleet else len(stack.replicas)
    result["simulator_check"] = simulator_check(rows, renderers)
    result["simulator_check"]["faults_injected"] = (out / "faults.jsonl").exists()
    (out / "accounting.json").write_text(json.dumps(result, indent=2))
    return result


def tally(
    accepted: list[str],
    jobs: dict,
    attempts: list[dict],
    outputs: dict[str, int],
    executions: list[str],
    cut_off: set[str] | None = None,
) -> dict:
    """The accounting as numbers (see the module docstring); plain data in, so it is testable."""
    states = Counter(jobs[i].state for i in set(accepted) if i in jobs)
    missing = sorted(i for i in set(accepted) if i not in jobs)
    no_output = sorted(
        i for i in set(accepted) if i in jobs and jobs[i].state == "done" and not outputs.get(i)
    )
    unfinished = sorted(i for i in set(accepted) if i in jobs and not jobs[i].final)
    twice_accepted = sorted(i for i, n in Counter(accepted).items() if n > 1)
    done_attempts = Counter(a["job_id"] for a in attempts if a["state"] == "done")
    twice_done = sorted(i for i, n in done_attempts.items() if n > 1)
    twice_executed = sorted(p for p, n in Counter(executions).items() if n > 1)
    dead = Counter(jobs[i].error_kind or "?" for i in set(accepted) if i in jobs and jobs[i].state == "dead")
    # Rows no client holds an id for: a submission answered with an error after its row was stored.
    # (cut_off: the test ended while the client waited for the answer; its job is known by its key.)
    orphans = sorted(i for i in jobs if i not in set(accepted) and i not in (cut_off or set()))
    per_job_attempts = Counter(a["job_id"] for a in attempts)
    return {
        "accepted": len(set(accepted)),
        "states": dict(states),
        "dead_by_kind": dict(dead),
        "lost": len(missing) + len(no_output),
        "lost_ids": (missing + no_output)[:50],
        "unfinished": len(unfinished),
        "unfinished_ids": unfinished[:50],
        "duplicated": len(twice_accepted) + len(twice_done) + len(twice_executed),
        "duplicated_detail": {
            "accepted_twice": twice_accepted[:50],
            "done_twice": twice_done[:50],
            "prompt_executed_twice": twice_executed[:50],
        },
        "cut_off_at_end": len(cut_off or ()),
        "orphans": len(orphans),
        "orphan_states": dict(Counter(jobs[i].state for i in orphans)),
        "attempts": sum(per_job_attempts.values()),
        "retried_jobs": sum(1 for n in per_job_attempts.values() if n > 1),
        "outputs": sum(outputs.values()),
        "host_executions": len(executions),
    }


def trace_rows(jobs: dict, accepted: list[str], start: float) -> list[dict]:
    rows = []
    for job_id in dict.fromkeys(accepted):
        job = jobs.get(job_id)
        if job is None or not job.final or job.finished_at is None:
            continue
        service = max(0.0, job.finished_at - job.created_at - job.queued_seconds)
        rows.append(
            {
                "t": round(job.created_at - start, 4),
                "priority": job.priority,
                "tier": job.spec.get("tier", "balanced"),
                "audio_s": job.spec.get("duration", 10.0),
                "job_s": round(service, 4),
                "wait_s": round(job.queued_seconds, 4),
                "state": job.state,
                "host": job.host or "",
            }
        )
    return sorted(rows, key=lambda r: r["t"])


def simulator_check(rows: list[dict], renderers: int) -> dict:
    """Replay the measured arrivals and service times with ``renderers`` servers; compare mean waits.

    A renderer is busy from taking a job to being ready for the next, which is longer than the
    job's own time by the hand-over (the worker records the end, acknowledges the message, the
    broker delivers the next); the replay adds the hand-over measured on the hosts.
    """
    from comfyui_sonic.runner.capacity.simulate import Arrival, FleetConfig, HostClass, simulate

    if not rows or renderers < 1:
        return {"jobs": 0}
    handover = handover_seconds(rows)
    arrivals = [
        Arrival(r["t"], int(r["priority"]), r["tier"], float(r["audio_s"]), float(r["job_s"]) + handover)
        for r in rows
    ]
    result = simulate(arrivals, FleetConfig(hosts=[HostClass(renderers)], max_attempts=1))
    measured: dict[int, list[float]] = {}
    for r in rows:
        measured.setdefault(int(r["priority"]), []).append(float(r["wait_s"]))
    out = {"jobs": len(rows), "renderers": renderers, "handover_s": handover, "by_priority": {}}
    all_measured = [w for ws in measured.values() for w in ws]
    all_sim = [w for ws in result.waits.values() for w in ws]
    for prio, waits in sorted(measured.items()):
        sim = result.waits.get(prio, [])
        out["by_priority"][f"P{prio}"] = {
            "measured_mean_s": sum(waits) / len(waits),
            "simulated_mean_s": sum(sim) / len(sim) if sim else 0.0,
        }
    m, s = sum(all_measured) / len(all_measured), sum(all_sim) / len(all_sim)
    out["measured_mean_s"], out["simulated_mean_s"] = m, s
    # Waits well under a second are dominated by the workers' polling, not by queueing.
    out["relative_error"] = abs(s - m) / m if m > 0.5 else None
    out["within_15pct"] = out["relative_error"] is None or out["relative_error"] <= 0.15
    return out


def handover_seconds(rows: list[dict]) -> float:
    """Mean time a host's next job waited after its last one ended, over the jobs already queued then."""
    by_host: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        if r.get("host"):
            taken = float(r["t"]) + float(r["wait_s"])
            by_host.setdefault(r["host"], []).append((taken, taken + float(r["job_s"]), float(r["t"])))
    gaps = []
    for runs in by_host.values():
        runs.sort()
        for (_, ended, _), (taken, _, arrived) in itertools.pairwise(runs):
            if arrived < ended <= taken:
                gaps.append(taken - ended)
    return sum(gaps) / len(gaps) if gaps else 0.0


def _cut_off_jobs(store, records: list[dict]) -> set[str]:
    """Jobs of submissions sent but never answered (the load stopped mid-request), by Idempotency-Key."""
    from comfyui_sonic.runner.store.schema import idempotency
    from sqlalchemy import select

    answered = {r.get("key") for r in records if r.get("ev") == "submit"}
    pending = [r["key"] for r in records if r.get("ev") == "sending" and r["key"] not in answered]
    if not pending:
        return set()
    with store.engine.connect() as conn:
        rows = conn.execute(select(idempotency.c.job_id).where(idempotency.c.key.in_(pending)))
        return {row[0] for row in rows}


def _bucket_outputs(stack) -> dict[str, int]:
    counts: Counter = Counter()
    client = stack.s3.client()
    from .stack import BUCKET

    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="jobs/"):
        for item in page.get("Contents", []):
            parts = item["Key"].split("/")
            if len(parts) >= 4 and parts[2] == "outputs":
                counts[parts[1]] += 1
    return dict(counts)


def _host_executions(out: Path) -> list[str]:
    prompts = []
    for path in sorted((out / "hosts").glob(f"*/{EXECUTIONS_FILE}")):
        for line in path.read_text().splitlines():
            try:
                prompts.append(json.loads(line)["prompt_id"])
            except (ValueError, KeyError):
                continue
    return prompts
