"""The batch report: what happened to every job, and how fast the fleet went.

build_report() turns the journal's JobRecords into a plain dict (written with
json.dumps) and render_table() into a table a person reads in a terminal or a
CI log. Latency is end to end as an operator feels it: from the job's (last)
submission to a host until its output was downloaded and verified; the
queued/run/download columns split it. Every string passes through redact(),
so a host's credentials never reach a report file.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .jobs import STATES, JobRecord
from .secrets import host_label, redact, redact_obj

PERCENTILES = (50, 95, 99)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between ranks (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99, mean and max of a list of seconds (None for an empty list)."""
    values = [v for v in values if v is not None]
    stats: dict[str, float | None] = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    stats["mean"] = sum(values) / len(values) if values else None
    stats["max"] = max(values) if values else None
    stats["count"] = len(values)
    return stats


def latency(job: JobRecord) -> float | None:
    """Seconds from submission to the end of the job (None until it has both)."""
    if job.submitted_at is None or job.finished_at is None:
        return None
    return max(0.0, job.finished_at - job.submitted_at)


def job_row(job: JobRecord, host_names: dict[str, str] | None = None) -> dict[str, Any]:
    return redact_obj(
        {
            "job_id": job.job_id,
            "row": job.row,
            "priority": f"P{job.priority}",
            "state": job.state,
            "host": job.host,
            "host_name": (host_names or {}).get(job.host) if job.host else None,
            "attempts": job.attempts,
            "resolution": job.resolution,
            "latency_seconds": latency(job),
            "queued_seconds": job.queued_seconds,
            "run_seconds": job.run_seconds,
            "download_seconds": job.download_seconds,
            "submitted_at": job.submitted_at,
            "finished_at": job.finished_at,
            "outputs": list(job.outputs),
            "error": job.error,
            "error_kind": job.error_kind,
            "notes": list(job.notes),
        }
    )


def build_report(
    jobs: list[JobRecord],
    started_at: float,
    finished_at: float,
    attempts: list[dict] | None = None,
    host_names: dict[str, str] | None = None,
    excluded_hosts: dict[str, str] | None = None,
) -> dict:
    """Per-job rows plus a summary: counts by state and host, throughput, latency percentiles.

    `attempts` (the journal's attempt rows: job_id, attempt, host, state, error, ...)
    adds every attempt to the report and counts their outcomes per host, so a
    retried or failed-over job shows where each of its tries went, and
    `summary["duplicates"]` counts attempts that ran to the end although their job
    had already been moved elsewhere (state "done_duplicate").
    Hosts stay keyed by their safe URL (the journal's identity); `host_names`
    (safe URL -> name given in a hosts file) lets the table show "gpu1 (URL)", and
    `excluded_hosts` (safe URL -> why) lists hosts that could not run the workflow.
    """
    rows = [job_row(job, host_names) for job in jobs]
    done = [job for job in jobs if job.state == "done"]
    wall = max(0.0, finished_at - started_at)
    by_state = Counter(job.state for job in jobs)
    by_host: dict[str, Counter] = {}
    for job in jobs:
        counts = by_host.setdefault(redact(job.host) if job.host else "-", Counter())
        counts[job.state] += 1
        counts["attempts"] += job.attempts
    summary = {
        "total": len(jobs),
        "by_state": {state: by_state[state] for state in STATES if by_state[state]},
        "by_host": {host: dict(counts) for host, counts in sorted(by_host.items())},
        "attempts": sum(job.attempts for job in jobs),
        "retried_jobs": sum(1 for job in jobs if job.attempts > 1),
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_seconds": wall,
        "throughput_jobs_per_s": len(done) / wall if wall > 0 else None,
        "latency_seconds": distribution(latency(job) for job in done),
        "queued_seconds": distribution(job.queued_seconds for job in done),
        "run_seconds": distribution(job.run_seconds for job in done),
        "download_seconds": distribution(job.download_seconds for job in done),
        "host_names": redact_obj(dict(host_names or {})),
        "excluded_hosts": redact_obj(dict(excluded_hosts or {})),
    }
    report = {"summary": summary, "jobs": rows}
    if attempts is not None:
        report["attempts"] = [redact_obj(dict(a)) for a in attempts]
        per_host: dict[str, Counter] = {}
        for a in report["attempts"]:
            per_host.setdefault(a.get("host") or "-", Counter())[a.get("state") or "?"] += 1
        summary["attempts_recorded"] = len(attempts)
        # Attempts that finished on a host after their job had been moved elsewhere (the host
        # was unreachable for the failover grace): the job ran twice, once wasted.
        summary["duplicates"] = sum(1 for a in attempts if a.get("state") == "done_duplicate")
        summary["attempts_by_host"] = {host: dict(c) for host, c in sorted(per_host.items())}
    return report


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 120:
        return f"{value / 60:.1f}m"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def render_table(report: dict, max_rows: int | None = 1000, width: int = 140) -> str:
    """The report as text: a summary block, per-host counts, then one line per job.

    Jobs that did not finish well (dead, failed, unfinished) are listed first so
    they are on screen even when `max_rows` cuts a long batch short (the JSON
    report always has every job; rich needs about 0.8 s per 1,000 rows, so pass
    max_rows=None deliberately for a 10,000-job table).
    """
    import io

    from rich.console import Console
    from rich.table import Table

    summary = report["summary"]
    names = summary.get("host_names") or {}

    def label(host: str | None) -> str:
        return host_label(names.get(host), host) if host and host != "-" else "-"

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, force_terminal=False)

    counts = ", ".join(f"{n} {state}" for state, n in summary["by_state"].items()) or "no jobs"
    rate = summary["throughput_jobs_per_s"]
    console.print(
        f"{summary['total']} jobs: {counts} in {_seconds(summary['wall_seconds'])}"
        f" ({'-' if rate is None else f'{rate:.2f}'} jobs/s, {summary['attempts']} attempts,"
        f" {summary['retried_jobs']} jobs retried"
        + (f", duplicates: {summary['duplicates']}" if "duplicates" in summary else "")
        + ")"
    )

    timing = Table(title="Timing of done jobs (seconds)", title_justify="left")
    for column in ("", "p50", "p95", "p99", "mean", "max"):
        timing.add_column(column, justify="right" if column else "left")
    for key, title in (
        ("latency_seconds", "end to end"),
        ("queued_seconds", "queued"),
        ("run_seconds", "run"),
        ("download_seconds", "download"),
    ):
        stats = summary[key]
        timing.add_row(title, *(_seconds(stats[k]) for k in ("p50", "p95", "p99", "mean", "max")))
    console.print(timing)

    hosts = Table(title="Hosts", title_justify="left")
    host_states = [s for s in STATES if any(c.get(s) for c in summary["by_host"].values())]
    for column in ("host", *host_states, "attempts"):
        hosts.add_column(column, justify="left" if column == "host" else "right")
    for host, c in summary["by_host"].items():
        hosts.add_row(label(host), *(str(c.get(s, 0)) for s in host_states), str(c.get("attempts", 0)))
    console.print(hosts)
    for host, why in (summary.get("excluded_hosts") or {}).items():
        console.print(f"host {label(host)} was excluded (it cannot run this workflow): {why}", markup=False)

    if "attempts_by_host" in summary:
        _print_attempts(console, report, max_rows, label)

    rows = sorted(report["jobs"], key=lambda r: (r["state"] == "done", r["row"]))
    shown = rows if max_rows is None else rows[:max_rows]
    jobs = Table(title="Jobs", title_justify="left")
    for column in ("row", "job", "state", "host", "att", "latency", "queued", "run", "dl", "output / error"):
        jobs.add_column(column, overflow="fold")
    for r in shown:
        detail = r["error"] if r["state"] != "done" and r["error"] else ", ".join(r["outputs"])
        detail = "; ".join([d for d in (detail, *r["notes"]) if d])
        jobs.add_row(
            str(r["row"]),
            r["job_id"],
            r["state"],
            label(r["host"]),
            str(r["attempts"]),
            _seconds(r["latency_seconds"]),
            _seconds(r["queued_seconds"]),
            _seconds(r["run_seconds"]),
            _seconds(r["download_seconds"]),
            detail,
        )
    console.print(jobs)
    if len(shown) < len(rows):
        console.print(f"... {len(rows) - len(shown)} more jobs in the JSON report")
    return console.export_text()


def _print_attempts(console, report: dict, max_rows: int | None, label) -> None:
    """Outcome of every attempt per host, then the attempts that did not end done."""
    from rich.table import Table

    by_host = report["summary"]["attempts_by_host"]
    states = sorted({state for counts in by_host.values() for state in counts})
    table = Table(title=f"Attempts ({report['summary']['attempts_recorded']} recorded)", title_justify="left")
    for column in ("host", *states):
        table.add_column(column, justify="left" if column == "host" else "right")
    for host, counts in by_host.items():
        table.add_row(label(host), *(str(counts.get(s, 0)) for s in states))
    console.print(table)

    unsuccessful = [a for a in report["attempts"] if a.get("state") != "done"]
    if not unsuccessful:
        return
    shown = unsuccessful if max_rows is None else unsuccessful[:max_rows]
    table = Table(title="Attempts that did not end done", title_justify="left")
    for column in ("job", "try", "host", "state", "kind", "error"):
        table.add_column(column, overflow="fold")
    for a in shown:
        table.add_row(
            str(a.get("job_id")),
            str(a.get("attempt")),
            label(a.get("host")),
            str(a.get("state")),
            str(a.get("error_kind") or ""),
            str(a.get("error") or ""),
        )
    console.print(table)
    if len(shown) < len(unsuccessful):
        console.print(f"... {len(unsuccessful) - len(shown)} more attempts in the JSON report")
