"""Prometheus metrics of the API and the workers (prometheus_client).

Counters and histograms count what this process did; the gauges that must agree across
replicas (jobs by state, queue depth per pool and priority, webhook backlog) are read from
the job store at scrape time, so any replica's ``/metrics`` tells the same totals.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)


class Metrics:
    """One registry per app or worker (tests make several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sonic_api_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.submitted = Counter(
            "sonic_jobs_submitted",
            "Jobs accepted, by tier and priority",
            ["tier", "priority"],
            registry=self.registry,
        )
        self.refused = Counter(
            "sonic_jobs_refused", "Requests refused before anything was stored, by reason", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        self.finished = Counter(
            "sonic_jobs_finished", "Jobs ended, by state and failure reason", ["state", "reason"],
            registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "sonic_job_retries", "Attempts retried, by reason", ["reason"], registry=self.registry
        )
        self.oom_downgrades = Counter(
            "sonic_oom_downgrades", "Jobs moved to a lower resolution after an OOM", registry=self.registry
        )
        self.latency = Histogram(
            "sonic_job_seconds", "Job latency by tier and phase (wait, run, total)", ["tier", "phase"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def add_store_gauges(self, read: Callable[[], dict]) -> None:
        """Gauges computed from the shared store on every scrape (``read`` returns the numbers)."""
        self.registry.register(_StoreCollector(read))


class _StoreCollector:
    def __init__(self, read: Callable[[], dict]) -> None:
        self._read = read

    def collect(self):
        data = self._read()
        jobs = GaugeMetricFamily("sonic_jobs", "Jobs in the store by state", labels=["state"])
        for state, n in sorted(data.get("jobs", {}).items()):
            jobs.add_metric([state], n)
        yield jobs
        depth = GaugeMetricFamily(
            "sonic_queue_depth", "Jobs waiting (queued, or failed and due to retry) by pool and priority",
            labels=["pool", "priority"],
        )  # fmt: skip
        for (pool, priority), n in sorted(data.get("queued", {}).items()):
            depth.add_metric([str(pool), priority], n)
        yield depth
        backlog = GaugeMetricFamily("sonic_webhook_backlog", "Webhook deliveries not yet made")
        backlog.add_metric([], data.get("webhook_backlog", 0))
        yield backlog

    def describe(self):
        return []


class HostGauges:
    """Per-host gauges of a worker, read from it at scrape time: jobs in flight, host health."""

    def __init__(self, read: Callable[[], list[tuple[str, int, bool]]]) -> None:
        self._read = read  # -> [(host, running jobs, healthy)]

    def collect(self):
        inflight = GaugeMetricFamily("sonic_host_inflight", "Jobs in flight on each host", labels=["host"])
        healthy = GaugeMetricFamily("sonic_host_healthy", "1 while the host answers", labels=["host"])
        for host, running, ok in self._read():
            inflight.add_metric([host], running)
            healthy.add_metric([host], 1 if ok else 0)
        yield inflight
        yield healthy

    def describe(self):
        return []


def observe_job_end(metrics: Metrics, job) -> None:
    """Count a job's end and its latencies (the in-process worker and fleet workers alike)."""
    status = "cancelled" if job.state == "dead" and job.error_kind == "cancelled" else job.state
    metrics.finished.labels(state=status, reason=job.error_kind or "").inc()
    tier = (job.spec or {}).get("tier", "?")
    if job.finished_at:
        metrics.latency.labels(tier=tier, phase="total").observe(job.finished_at - job.created_at)
    metrics.latency.labels(tier=tier, phase="wait").observe(job.queued_seconds)
    if job.run_seconds:
        metrics.latency.labels(tier=tier, phase="run").observe(job.run_seconds)
