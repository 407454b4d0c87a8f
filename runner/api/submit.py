"""Turning a validated request into a stored job, and a job into the API's answer.

The order matters for "nothing is stored for a refused request": every check runs on the
uploaded temp files first; only then are the inputs written to the object store and the
job row inserted (queued), which is what a worker picks up.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..jobs import DEAD, DONE, FINAL_STATES, QUEUED, JobRecord
from ..storage import ObjectStore, job_key
from ..store import JobStore, StaleJob
from ..store.api_keys import ApiKey, ApiKeys
from ..store.outbox import Outbox
from ..store.templates import Templates, tier_of
from ..workflow import load_workflow, resolution_of
from . import validation as v
from .settings import ServeSettings
from .speech import text_template

log = logging.getLogger(__name__)

#: How long after binding an Idempotency-Key a request has to store its job (see _idempotent_job).
IDEMPOTENCY_STORE_S = 30.0

ANONYMOUS = "anonymous"
#: Threads that write a submission's inputs side by side (boto3 clients are thread-safe).
_PUTS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sonic-put")
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
        #: The shipped templates (the package's own folder: read once, not on every submission).
        self.shipped = v.template_names(settings)
        self.templates = Templates(store)
        self.outbox = Outbox(store)

    # ------------------------------------------------------------------ templates
    def template_names(self) -> list[str]:
        """Shipped and registered templates (read each time: another replica may add one)."""
        return sorted(set(self.shipped) | set(self.templates.names()))

    def template(self, name: str) -> dict:
        """The workflow of a shipped template (cached) or a registered one (from the database)."""
        if name in self.shipped:
            if name not in self._templates:
                self._templates[name] = load_workflow(self.settings.templates_dir / f"{name}_api.json")
            return self._templates[name]
        record = self.templates.get(name)
        if record is None:
            raise v.invalid("template", f"template {name!r} is unknown (was it removed?)", "unknown_template")
        return record.workflow

    def _resolve_template(self, name: str | None, tier: str | None) -> str:
        """The template a submission names. Among the shipped ones first: a name found there
        resolves the same with the registered ones added, and most submissions are answered
        without reading the registered templates from the database."""
        default = self.settings.default_template
        try:
            return v.resolve_template(name, tier, self.shipped, default)
        except v.RequestError:
            return v.resolve_template(name, tier, self.template_names(), default)

    def template_tier(self, name: str) -> str:
        """The tier a job of this template counts under in metrics (``custom`` when it has none)."""
        if name in self.shipped:
            return name.rsplit("_", 1)[-1]
        record = self.templates.get(name)
        return (record.tier if record else None) or tier_of(name) or "custom"

    def describe_templates(self) -> list[dict]:
        """What ``GET /v1/templates`` lists: each template's settable inputs and tiers."""
        names = self.template_names()
        shipped = set(self.shipped)
        out = []
        for name in names:
            own = self.template_tier(name)
            own = own if own in v.TIERS else None
            out.append(
                {
                    "name": name,
                    "source": "shipped" if name in shipped else "registered",
                    "tier": own,
                    "tiers": v.tiers_of(name, names, own),
                    "inputs": v.settable_inputs(self.template(name)),
                }
            )
        return out

    # ------------------------------------------------------------------ submit
    def check_limits(self, key: ApiKey | None) -> None:
        """429 when the key submitted ``per_minute`` jobs in the last minute or has ``max_queued``
        unfinished: one query, each count stopped at its limit (runs on every submission). A limit
        of 0 is none: a key with neither (a trusted service's) costs no query at all."""
        if key is None or not (key.per_minute or key.max_queued):
            return
        recent, unfinished = self.store.owner_load(
            key.key_id, time.time() - 60, recent_cap=key.per_minute, open_cap=key.max_queued
        )
        if key.per_minute and recent >= key.per_minute:
            raise v.RequestError(
                429,
                "rate_limited",
                f"at most {key.per_minute} submissions per minute for this key; retry later",
            )
        if key.max_queued and unfinished >= key.max_queued:
            raise v.RequestError(
                429,
                "too_many_queued",
                f"this key has {key.max_queued} unfinished jobs, its limit; retry when some have ended",
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
                try:
                    self._publish_if_lost(existing)
                except v.RequestError:
                    if existing.state == DEAD:  # the broker refused it: the key is free for the next try
                        self.keys.release_idempotency(owner, idempotency_key, existing.job_id)
                    raise
                return existing, False
        self.check_limits(key)
        name = self._resolve_template(fields.get("template"), fields.get("tier"))
        if audio is None:
            name = text_template(name, self.settings)
        template = self.template(name)
        self._check_pool(template)
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
                existing = self._idempotent_job(owner, idempotency_key)
                if existing is not None:
                    return existing, False
                # Its job never came (that request died between binding and storing): this one
                # takes the key over, or else every retry would make a job the key does not name.
                if self.keys.rebind_idempotency(owner, idempotency_key, bound, job_id) != job_id:
                    raise _being_stored()
        stored_job: JobRecord | None = None
        try:
            stored = self._put_inputs(job_id, {"image": image, "audio": audio})
            spec = {
                "template": name,
                "tier": self.template_tier(name),
                "params": params,
                "image": stored["image"],
                **({"audio": stored["audio"]} if audio is not None else {"text": fields["text"]}),
                "duration": round(seconds, 3) if seconds is not None else None,
                "webhook_url": webhook,
            }
            if name not in self.shipped:
                # A registered template travels with the job: a worker needs no lookup, and a
                # later `templates remove` or replace does not change a job already queued.
                spec["workflow"] = template
            sources = {k: fields[k] for k in ("image_key", "audio_key") if fields.get(k)}
            if sources:
                spec["sources"] = sources
            job = JobRecord(
                job_id=job_id,
                row=0,
                priority=priority,
                spec=spec,
                notes=notes,
                resolution=resolution_of(template),
            )
            if idempotency_key and not self.keys.touch_idempotency(owner, idempotency_key, job_id):
                # The inputs' upload outlived IDEMPOTENCY_STORE_S and a retry took the key over:
                # its job is the request's job; this one is not stored.
                existing = self._idempotent_job(owner, idempotency_key)
                if existing is not None:
                    return existing, False
                raise _being_stored()
            self.store.add_jobs([job], owner=owner, state_events=True)  # (its "queued" event too)
            stored_job = job
            self._publish(job)
        except Exception:
            if idempotency_key and not self._may_run(stored_job, job_id):
                self.keys.release_idempotency(owner, idempotency_key, job_id)
            raise
        return job, True

    def _may_run(self, stored: JobRecord | None, job_id: str) -> bool:
        """Whether a failed request left a job that can still render: then its Idempotency-Key
        stays bound, and the client's retry gets that job (published if it never was) instead
        of a second render of the same request. A job ended at once (the broker refused it),
        or none at all, lets the key go for the retry."""
        if stored is None:  # add_jobs raised; its commit may still have landed (an answer lost)
            try:
                stored = self.store.job(job_id)
            except Exception:  # noqa: BLE001 - cannot tell: a retry waits for the job a moment, then makes it
                return True
        return stored is not None and stored.state != DEAD

    def _check_pool(self, template: dict) -> None:
        """Fleet mode: a template above the largest pool would sit in no worker's queue."""
        if self.publisher is None:
            return
        from ..fleet.queues import PoolError, pool_for

        try:
            pool_for(resolution_of(template), self.publisher.pools)
        except PoolError as exc:
            raise v.invalid("template", f"template: {exc} of serve and the workers", "no_pool") from None

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
        try:
            self.store.mark_published([job.job_id])
        except Exception as exc:  # noqa: BLE001 - the job is queued; a missed mark costs a duplicate message
            # (The workers' sweep publishes it again after --unpublished-after; the duplicate
            # finds the job taken or done and is dropped.) Answering 500 here made clients retry.
            log.warning("job %s: published, but not marked so (%s)", job.job_id, exc)

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

    def submit_named(
        self, key: ApiKey | None, body: object, tmp: Path, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """A JSON request naming objects already in the store: fetched, then checked like uploads.

        Each object is copied under the job's own keys, so the job does not change when the
        client later overwrites or deletes its upload (and ``gc`` treats it like any job's).
        """
        owner = key.key_id if key else ANONYMOUS
        if idempotency_key:
            existing = self._idempotent_job(owner, idempotency_key)
            if existing is not None:
                return existing, False
        image_key, audio_key, fields = v.check_named_request(body)
        for field, object_key in (("image", image_key), ("audio", audio_key)):
            if key is not None and not key.may_name(object_key):
                raise v.RequestError(
                    403,
                    "forbidden_object",
                    f"{field}: {object_key!r} is outside this API key's folder {key.objects_prefix}; "
                    f"upload under {key.objects_prefix} and name that object",
                    field,
                )
        image = self._fetch("image", image_key, tmp)
        audio = self._fetch("audio", audio_key, tmp)
        fields = {**fields, "image_key": image_key, "audio_key": audio_key}
        return self.submit(key, image, audio, fields, idempotency_key)

    def _fetch(self, field: str, object_key: str, tmp: Path) -> Upload:
        size = self.storage.size(object_key)
        if size is None:
            raise v.invalid(
                field,
                f"{field}: no object {object_key!r} in {self.storage.description}; upload it first "
                "or send the file itself as multipart",
                "not_found",
            )
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise v.RequestError(
                413,
                "too_large",
                f"{field}: object {object_key!r} is {size / 1e6:.1f} MB; at most {limit // (1024 * 1024)} MB",
                field,
            )
        name = object_key.rsplit("/", 1)[-1]
        dest = tmp / field / name
        self.storage.get_file(object_key, dest)
        return Upload(dest, name)

    def _put_inputs(self, job_id: str, uploads: dict[str, Upload | None]) -> dict[str, str]:
        """Write the inputs to the object store at once (kind -> key): a submission waits for one
        round trip to the bucket, not one per file. The first failure is raised."""
        wanted = {kind: upload for kind, upload in uploads.items() if upload is not None}
        if len(wanted) < 2:
            return {kind: self._put(job_id, kind, upload) for kind, upload in wanted.items()}
        futures = {kind: _PUTS.submit(self._put, job_id, kind, upload) for kind, upload in wanted.items()}
        return {kind: future.result() for kind, future in futures.items()}

    def _put(self, job_id: str, kind: str, upload: Upload) -> str:
        suffix = Path(upload.filename or "").suffix.lower()[:8] or ".bin"
        key = job_key(job_id, "inputs", f"{kind}{suffix}")
        self.storage.put_file(key, upload.path)
        return key

    def _idempotent_job(self, owner: str, idempotency_key: str) -> JobRecord | None:
        """The job the key names. A request stores its job within ``IDEMPOTENCY_STORE_S`` of
        binding the key (the inputs' upload between): a young binding is waited for, an older
        one without its job is stale (that request died) and names nothing."""
        binding = self.keys.binding(owner, idempotency_key)
        if binding is None:
            return None
        job_id, bound_at = binding
        while True:
            job = self.store.job(job_id, owner=owner)
            if job is not None or time.time() > bound_at + IDEMPOTENCY_STORE_S:
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
            "error": {"kind": job.error_kind, "message": job.error} if job.error else None,
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
    def wait_final(self, key: ApiKey | None, job_id: str, timeout: float) -> JobRecord:
        """The job once it has ended, or as it is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(key, job_id)
            if job.state in FINAL_STATES or time.monotonic() >= deadline:
                return job
            time.sleep(0.1)

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
                    self.outbox.job_ended(job, "cancelled")
                    return job
                except StaleJob:
                    continue  # a worker took it meanwhile: interrupt it instead
            self.store.add_event(job_id, "cancel_requested", {"state": job.state})
            interrupt(job)  # this process's own worker stops at once; others see the event
            return job
        raise v.RequestError(409, "busy", f"job {job_id} is changing state; try again", "id")


def _being_stored() -> v.RequestError:
    """Another request holds the Idempotency-Key and has not stored its job yet."""
    return v.RequestError(
        409, "idempotency_conflict", "another request with this Idempotency-Key is being stored; retry"
    )


def _differs(given: str, seconds: float) -> bool:
    try:
        return abs(float(given) - seconds) > 0.05
    except ValueError:
        return True
