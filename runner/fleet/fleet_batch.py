"""``sonic-runner batch WORKFLOW MANIFEST --broker URL --db URL``: publish a manifest, follow it.

The manifest's rows become jobs in the shared job store and one message each on the
broker; the workers do the rest. Publishing is idempotent: job ids are stable (the batch
name + the row's id), a job already in the store is never added twice, and only jobs whose
message the broker never confirmed are published again on ``--resume`` (a publisher
killed half-way). Following reads the store's events, so the live display, ``--quiet``
and ``--jsonl`` look as in local mode; Ctrl-C stops following, never the jobs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import jobs as J
from ..jobs import JobRecord
from ..store.job_store import state_data

Sink = Callable[[dict], None]


@dataclass
class FleetBatchConfig:
    workflow_path: Path
    manifest_path: Path
    out_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # the batch's name in the store (default: manifest stem + a hash)
    resume: bool = False
    poll_interval: float = 0.5


def default_batch_name(manifest: Path, workflow_hash: str, out_dir: Path) -> str:
    """manifest stem + a hash of where it is, its workflow and its output folder: the same
    command names the same batch, another manifest or folder another one."""
    seed = f"{Path(manifest).resolve()}|{workflow_hash}|{Path(out_dir).resolve()}"
    stem = batch_name(Path(manifest).stem)[:40] or "batch"
    return f"{stem}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def batch_name(text: str) -> str:
    """A batch name usable as a job id prefix (no '.', which separates it from the row's id)."""
    from ..batch import safe_job_id

    return safe_job_id(text).replace(".", "_")


class FleetBatch:
    """Publishes one manifest to the broker and follows its jobs in the job store."""

    def __init__(self, config: FleetBatchConfig, store: Any, publisher: Any) -> None:
        self.config = config
        self.store = store
        self.publisher = publisher
        self.name = config.name or ""
        self.total = 0
        self.published = 0
        self.sinks: list[Sink] = []

    # ------------------------------------------------------------------ publish
    def publish(self) -> int:
        """Add the manifest's jobs (new ones only) and publish every unconfirmed one; returns how many."""
        from ..batch import BatchError, build_jobs, sha256_file
        from ..manifest import read_manifest
        from ..workflow import load_workflow

        cfg = self.config
        template = load_workflow(cfg.workflow_path)
        workflow_hash = sha256_file(cfg.workflow_path)
        self.name = (
            batch_name(cfg.name)
            if cfg.name
            else default_batch_name(cfg.manifest_path, workflow_hash, cfg.out_dir)
        )
        existing = self.store.counts(batch=self.name)
        if existing and not cfg.resume:
            raise BatchError(
                f"batch {self.name} is already in the job store ({sum(existing.values())} jobs); "
                "add --resume to publish what is missing and follow it, or give --batch NAME"
            )
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        jobs = list(
            self._jobs(build_jobs(read_manifest(cfg.manifest_path), template, cfg.params), workflow_hash)
        )
        meta = {
            f"workflow:{workflow_hash}": template,
            f"batch:{self.name}": {
                "workflow_path": str(Path(cfg.workflow_path).resolve()),
                "workflow_hash": workflow_hash,
                "manifest_path": str(Path(cfg.manifest_path).resolve()),
                "out_dir": str(Path(cfg.out_dir).resolve()),
                "created": time.time(),
            },
        }
        if existing:
            meta.pop(f"batch:{self.name}")
        self.store.add_jobs(jobs, meta, batch=self.name, skip_existing=True)
        self.total = sum(self.store.counts(batch=self.name).values())
        self.published = self.publisher.publish_many(
            self.store.unpublished(self.name), on_published=self.store.mark_published
        )
        return self.published

    def _jobs(self, jobs: Iterable[JobRecord], workflow_hash: str) -> Iterable[JobRecord]:
        out_dir = str(Path(self.config.out_dir).resolve())
        for job in jobs:
            name = job.job_id
            job.job_id = f"{self.name}.{name}"
            job.spec = {
                **job.spec,
                "name": name,
                "batch": self.name,
                "workflow": workflow_hash,
                "out_dir": out_dir,
            }
            yield job

    # ------------------------------------------------------------------ follow
    def follow(self) -> int:
        """Show the batch's progress until every job ended: 0, or 1 if some are dead."""
        prefix, after = f"{self.name}.", 0
        for job in self.store.jobs(batch=self.name):  # where every job stands now
            self._emit(_job_event(job.job_id[len(prefix) :], state_data(job)))
        last_batch = 0.0
        while True:
            events = self.store.events(after=after, prefix=prefix, limit=2000)
            for event in events:
                after = event["id"]
                if event["kind"] == "state":
                    self._emit(_job_event(event["job_id"][len(prefix) :], event["data"]))
            now = time.monotonic()
            if now - last_batch >= 1.0 or not events:
                last_batch = now
                counts = self.store.counts(batch=self.name)
                self._emit(_batch_event(counts))
                if not any(n for s, n in counts.items() if s not in J.FINAL_STATES):
                    return 1 if counts.get(J.DEAD) else 0
            if len(events) < 2000:
                time.sleep(self.config.poll_interval)

    def _emit(self, event: dict) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - a sink must never stop the follower
                pass


def _job_event(job_id: str, data: dict) -> dict:
    return {
        "event": "job",
        "job_id": job_id,
        "row": data.get("row"),
        "state": "dead" if data.get("state") == "cancelled" else data.get("state"),
        "host": data.get("host"),
        "host_name": None,
        "attempt": data.get("attempt"),
        "error": data.get("error"),
        "error_kind": data.get("error_kind"),
        "outputs": data.get("outputs") or [],
        "ts": time.time(),
    }


def _batch_event(counts: dict[str, int]) -> dict:
    return {
        "event": "batch",
        "total": sum(counts.values()),
        "done": counts.get(J.DONE, 0),
        "dead": counts.get(J.DEAD, 0),
        "running": sum(counts.get(s, 0) for s in J.IN_FLIGHT_STATES),
        "queued": counts.get(J.QUEUED, 0) + counts.get(J.FAILED, 0),
        "ts": time.time(),
    }
