"""Turning a validated request into a stored job, and a job into the API's answer.

The order matters for "nothing is stored for a refused request": every check runs on the
uploaded temp files first; only then are the inputs written to the object store and the
job row inserted (queued), which is what a worker picks up.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..jobs import DEAD, DONE, FINAL_STATES, QUEUED, JobRecord
from ..storage import ObjectStore, job_key
from ..store import JobStore, StaleJob
from ..store.api_keys import ApiKey, ApiKeys
from ..workflow import load_workflow, resolution_of
from . import validation as v
from .settings import ServeSettings
from .speech import text_template

ANONYMOUS = "anonymous"
#: Form fields that are not template inputs.
RESERVED_FIELDS = {"template", "tier", "priority", "webhook_url", "duration", "image_key", "audio_key"}


@dataclass
class Upload:
    """A file the client sent, already on local disk (size-capped)."""

    path: Path
    filename: str


class JobService:
    """Submit, read and cancel jobs for API keys."""

    def __init__(
        self, settings: ServeSettings, store: JobStore, storage: ObjectStore, keys: ApiKeys, publisher=None
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.keys = keys
        self.publisher = publisher  # fleet mode: jobs go to the broker's pools (None: in-process worker)
        self._templates: dict[str, dict] = {}

    def template(self, name: str) -> dict:
        if name not in self._templates:
            self._templates[name] = load_workflow(self.settings.templates_dir / f"{name}_api.json")
        return self._templates[name]

    # ------------------------------------------------------------------ submit
    def check_limits(self, key: ApiKey | None) -> None:
        if key is None:
            return
        recent = sum(self.store.counts(owner=key.key_id, since=time.time() - 60).values())
        if recent >= key.per_minute:
            raise v.RequestError(
                429,
                "rate_limited",
                f"at most {key.per_minute} submissions per minute for this key; retry later",
            )
        open_jobs = sum(n for s, n in self.store.counts(owner=key.key_id).items() if s not in FINAL_STATES)
        if open_jobs >= key.max_queued:
            raise v.RequestError(
                429,
                "too_many_queued",
                f"this key has {open_jobs} unfinished jobs (limit {key.max_queued}); retry later",
            )

    def submit(
        self,
        key: ApiKey | None,
        image: Upload,
        audio: Upload | None,
        fields: dict[str, str],
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """(job, created): an Idempotency-Key seen before returns the first job, created False.

        ``audio`` None: a text job (``fields["text"]``; runner/api/speech.py)."""
        owner = key.key_id if key else ANONYMOUS
        if idempotency_key:
            existing = self._idempotent_job(owner, idempotency_key)
            if existing is not None:
                self._publish_if_lost(existing)
                return existing, False
        self.check_limits(key)
        name = v.resolve_template(fields.get("template"), fields.get("tier"), self.settings)
        if audio is None:
            name = text_template(name, self.settings)
        template = self.template(name)
        priority = v.check_priority(fields.get("priority"))
        webhook = v.check_webhook_url(fields.get("webhook_url"), self.settings)
        params = {k: val for k, val in fields.items() if k not in RESERVED_FIELDS}
        v.check_image(image.path, self.settings)
        if audio is None:
            seconds, notes = self._text_speech(template, params, fields)
        else:
            seconds = v.check_audio(audio.path, self.settings)
            v.check_params(template, {**params, "image": "x", "audio": "x"})
            notes = []
            given = fields.get("duration")
            if given not in (None, "") and _differs(given, seconds):
                notes.append(f"duration {given} s corrected to {seconds:.3f} s from the audio")

        job_id = uuid.uuid4().hex
        if idempotency_key:
            bound = self.keys.claim_idempotency(owner, idempotency_key, job_id)
            if bound != job_id:  # another request with this key won the race
                existing = self._wait_for_job(bound, owner)
                if existing is not None:
                    return existing, False
        try:
            spec = {
                "template": name,
                "tier": name.rsplit("_", 1)[-1],
                "params": params,
                "image": self._put(job_id, "image", image),
                **(
                    {"audio": self._put(job_id, "audio", audio)}
                    if audio is not None
                    else {"text": fields["text"]}
                ),
                "duration": round(seconds, 3) if seconds is not None else None,
                "webhook_url": webhook,
            }
            job = JobRecord(
                job_id=job_id,
                row=0,
                priority=priority,
                spec=spec,
                notes=notes,
                resolution=resolution_of(template),
            )
            self.store.add_jobs([job], owner=owner)
            self.store.add_event(job_id, "state", {"state": QUEUED})
            self._publish(job)
        except Exception:
            if idempotency_key:
                self.keys.release_idempotency(owner, idempotency_key, job_id)
            raise
        return job, True

    def _publish(self, job: JobRecord) -> None:
        """Fleet mode: one confirmed message per job. A broker that fails here ends the job
        (it would never run) and the client gets a 503 to retry."""
        if self.publisher is None:
            return
        from ..fleet.errors import BrokerError

        try:
            self.publisher.publish(job)
        except BrokerError as exc:
            self.store.transition(job, DEAD, error=str(exc), error_kind="broker", finished_at=time.time())
            raise v.RequestError(
                503, "broker_unavailable", "the job queue is unreachable; retry later"
            ) from None
        self.store.mark_published([job.job_id])

    def _text_speech(self, template: dict, params: dict, fields: dict[str, str]) -> tuple[None, list[str]]:
        """A text job's checks: its inputs fit the template; its duration comes later, from the speech."""
        v.check_params(template, {**params, "image": "x"})
        given = fields.get("duration")
        notes = (
            [f"duration {given} ignored: a text job lasts as long as its synthesised speech"] if given else []
        )
        return None, notes

    def _publish_if_lost(self, job: JobRecord) -> None:
        """A retried request whose first try stored the job but died before publishing it
        (a replica killed mid-request): publish it now, or it would wait forever."""
        if self.publisher is not None and job.state == QUEUED and not self.store.is_published(job.job_id):
            self._publish(job)

    def _put(self, job_id: str, kind: str, upload: Upload) -> str:
        suffix = Path(upload.filename or "").suffix.lower()[:8] or ".bin"
        key = job_key(job_id, "inputs", f"{kind}{suffix}")
        self.storage.put_file(key, upload.path)
        return key

    def _idempotent_job(self, owner: str, idempotency_key: str) -> JobRecord | None:
        bound = self.keys.bound_job(owner, idempotency_key)
        return self._wait_for_job(bound, owner) if bound else None

    def _wait_for_job(self, job_id: str, owner: str, timeout: float = 10.0) -> JobRecord | None:
        """The winner of an idempotency race stores its job within moments; wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.store.job(job_id, owner=owner)
            if job is not None or time.monotonic() > deadline:
                return job
            time.sleep(0.02)

    # ------------------------------------------------------------------ read
    def get(self, key: ApiKey | None, job_id: str) -> JobRecord:
        job = self.store.job(job_id, owner=key.key_id if key else ANONYMOUS)
        if job is None:
            raise v.RequestError(404, "not_found", f"job {job_id} not found", "id")
        return job

    def describe(self, job: JobRecord, base_url: str) -> dict:
        """The job as ``GET /v1/jobs/{id}`` shows it."""
        spec = job.spec
        progress = None
        for event in reversed(self.store.events(job.job_id)):
            if event["kind"] == "progress":
                progress = event["data"]
                break
        cancelled = job.state == DEAD and job.error_kind == "cancelled"
        outputs = []
        if job.state == DONE:
            for key in job.outputs:
                outputs.append(
                    {"name": key.rsplit("/", 1)[-1], "url": self.output_url(key, job.job_id, base_url)}
                )
        total = (job.finished_at - job.created_at) if job.finished_at else None
        return {
            "id": job.job_id,
            "status": "cancelled" if cancelled else job.state,
            "template": spec.get("template"),
            "tier": spec.get("tier"),
            "priority": f"P{job.priority}",
            "duration_s": spec.get("duration"),
            "notes": job.notes,
            "progress": progress,
            "error": None
            if cancelled
            else ({"kind": job.error_kind, "message": job.error} if job.error else None),
            "attempts": [
                {
                    k: a[k]
                    for k in (
                        "attempt",
                        "host",
                        "state",
                        "error",
                        "error_kind",
                        "submitted_at",
                        "finished_at",
                    )
                }
                for a in self.store.attempts(job.job_id)
            ],
            "timings": {
                "created_at": job.created_at,
                "queued_s": job.queued_seconds,
                "run_s": job.run_seconds,
                "total_s": total,
            },
            "outputs": outputs,
            "status_url": f"{base_url}/v1/jobs/{job.job_id}",
        }

    def output_url(self, key: str, job_id: str, base_url: str) -> str:
        if hasattr(self.storage, "bucket"):  # S3: a presigned URL straight to the bucket
            return self.storage.url(key, self.settings.output_url_expiry_s)
        return f"{base_url}/v1/jobs/{job_id}/outputs/{key.rsplit('/', 1)[-1]}"

    # ------------------------------------------------------------------ cancel
    def cancel(self, key: ApiKey | None, job_id: str, interrupt) -> JobRecord:
        """A queued job never runs; a running one is interrupted (``interrupt(job)``)."""
        for _ in range(20):
            job = self.get(key, job_id)
            if job.state in FINAL_STATES:
                raise v.RequestError(
                    409, "already_finished", f"job {job_id} already ended ({job.state})", "id"
                )
            if job.state == QUEUED or job.state == "failed":
                try:
                    self.store.transition(
                        job,
                        DEAD,
                        error="cancelled by the client",
                        error_kind="cancelled",
                        finished_at=time.time(),
                    )
                    self.store.add_event(job_id, "state", {"state": "cancelled"})
                    return job
                except StaleJob:
                    continue  # a worker took it meanwhile: interrupt it instead
            interrupt(job)
            return job
        raise v.RequestError(409, "busy", f"job {job_id} is changing state; try again", "id")


def _differs(given: str, seconds: float) -> bool:
    try:
        return abs(float(given) - seconds) > 0.05
    except ValueError:
        return True
