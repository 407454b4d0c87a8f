"""The FastAPI app of ``sonic-runner serve``: routes, auth, body limit, errors as JSON.

Every refusal is ``{"error": {"code", "message", "field"}}`` with the right status; an
unexpected error is logged here and answered as a 500 with no stack trace.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..jobs import FINAL_STATES
from ..metrics import Metrics
from ..storage import LocalStore, StorageError, open_store
from ..store import JobStore
from ..store.api_keys import ApiKey, ApiKeys
from ..store.outbox import Outbox
from . import validation as v
from .settings import ServeSettings
from .speech import speech_source
from .submit import JobService, Upload

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse a body over the limit before it is read whole (Content-Length, or while streaming)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        seen, over, started = 0, False, False

        async def limited():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True  # stop reading: the app sees the client leave
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message):
            nonlocal started
            if over:
                return  # the app's answer to the cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except BaseException:
            if not over:
                raise
        if over and not started:
            await _too_large(self.limit)(scope, receive, send)


class CountRequests:
    """Count each answer by route and status (the ``sonic_api_requests`` metric).

    A plain ASGI wrapper, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs
    every request through a task group and memory streams, CPU the submission path can spare.
    """

    def __init__(self, app, counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]  # an exception that escapes every handler ends as a 500

        async def noting(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            self.counter.labels(route=getattr(route, "path", "other"), status=str(status[0])).inc()


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        v.RequestError(
            413, "too_large", f"request body is over the {limit // (1024 * 1024)} MB limit", None
        ).body(),
        status_code=413,
        headers={"connection": "close"},
    )


def create_app(settings: ServeSettings, *, start_workers: bool = True) -> FastAPI:
    """The app with its store, storage, key table, outbox and (embedded) worker."""
    store = JobStore(settings.db_url)
    storage = open_store(settings.storage, s3_endpoint=settings.s3_endpoint, default="sonic-data/objects")
    keys = ApiKeys(store)
    outbox = Outbox(store)
    publisher = None
    if settings.broker_url:  # fleet mode: the broker's workers render; this process only serves
        from ..fleet.publisher import Publisher
        from ..fleet.queues import parse_pools

        publisher = Publisher(settings.broker_url, parse_pools(settings.pools), delays=False)
    service = JobService(settings, store, storage, keys, publisher)
    metrics = Metrics()
    metrics.add_store_gauges(lambda: _store_numbers(store, outbox, publisher.pools if publisher else None))
    background: list = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # What start-up made (modules, the S3 client's service model, SQLAlchemy's tables: ~200,000
        # objects) lives as long as the process; frozen, the garbage collector's full passes skip
        # it. Without this a full pass stopped every thread for ~100 ms about once a minute at
        # 25 submissions/s: the API's p99 latency.
        gc.collect()
        gc.freeze()
        if start_workers and settings.broker_url is None:
            from .local_worker import LocalWorker

            background.append(LocalWorker(settings, store, storage, outbox, metrics).start())
        if start_workers and settings.webhook_secret:
            from ..webhook_delivery import WebhookDispatcher

            background.append(WebhookDispatcher(outbox, settings.webhook_secret).start())
        yield
        for worker in background:
            await run_in_threadpool(worker.stop)
        if publisher is not None:
            publisher.close()
        store.close()

    app = FastAPI(title="Sonic talking-head jobs", version="1", docs_url="/docs", lifespan=lifespan)
    app.state.settings, app.state.store, app.state.service = settings, store, service
    app.state.metrics, app.state.outbox, app.state.background = metrics, outbox, background

    @app.exception_handler(v.RequestError)
    async def _refused(request: Request, exc: v.RequestError):
        headers = {"Retry-After": "30"} if exc.status == 429 else None
        if request.method == "POST":
            metrics.refused.labels(reason=exc.code).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError):
        log.error("storage: %s", exc)
        return JSONResponse(v.RequestError(503, "storage_unavailable", str(exc)).body(), status_code=503)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        body = v.RequestError(500, "internal", "internal error; it is logged on the server").body()
        return JSONResponse(body, status_code=500)

    app.add_middleware(CountRequests, counter=metrics.requests)

    def authenticate(request: Request) -> ApiKey | None:
        if not settings.auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise v.RequestError(401, "unauthorized", "send an API key: Authorization: Bearer <key>")
        key = keys.authenticate(token.strip())
        if key is None:
            raise v.RequestError(401, "unauthorized", "the API key is unknown or revoked")
        return key

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.post("/v1/jobs", status_code=202, openapi_extra=SUBMIT_BODY)
    async def submit_job(request: Request):
        key = await run_in_threadpool(authenticate, request)
        tmp = Path(tempfile.mkdtemp(prefix="sonic-upload-"))
        idempotency = request.headers.get("idempotency-key")
        try:
            if _is_json(request):
                body = await _json_body(request)
                job, created = await run_in_threadpool(service.submit_named, key, body, tmp, idempotency)
            else:
                form = await request.form(max_files=2, max_fields=200)
                fields = {
                    k: str(val)
                    for k, val in form.multi_items()
                    if not isinstance(val, UploadFile) and k not in ("image_key", "audio_key")
                }  # (those two name a JSON request's stored objects; a form sends the files)
                image = _file(form, "image")
                audio = (
                    _file(form, "audio")
                    if speech_source(isinstance(form.get("audio"), UploadFile), fields) is None
                    else None
                )
                uploads = [
                    await _spool(f, tmp / name) if f is not None else None
                    for f, name in ((image, "image"), (audio, "audio"))
                ]
                job, created = await run_in_threadpool(
                    service.submit, key, uploads[0], uploads[1], fields, idempotency
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if created:
            metrics.submitted.labels(tier=job.spec.get("tier", "?"), priority=f"P{job.priority}").inc()
        url = f"{base_url(request)}/v1/jobs/{job.job_id}"
        body = {"id": job.job_id, "status": job.state, "status_url": url}
        return JSONResponse(body, status_code=202 if created else 200, headers={"location": url})

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, request: Request):
        key = authenticate(request)
        return service.describe(service.get(key, job_id), base_url(request))

    @app.get("/v1/jobs")
    def list_jobs(request: Request, state: str | None = None, since: float | None = None, limit: int = 100):
        key = authenticate(request)
        owner = key.key_id if key else "anonymous"
        states = [state] if state else None
        jobs = service.store.jobs(states, owner=owner, since=since, limit=max(1, min(limit, 1000)))
        return {"jobs": [service.describe(j, base_url(request)) for j in jobs]}

    @app.delete("/v1/jobs/{job_id}")
    def cancel_job(job_id: str, request: Request):
        key = authenticate(request)
        # (fleet mode: the job's worker sees the cancel_requested event the service records)
        interrupt = (lambda j: None) if publisher else _interrupt(background)
        job = service.cancel(key, job_id, interrupt)
        # A running render stops within a step or two: answer with its end, not "running".
        job = service.wait_final(key, job.job_id, settings.cancel_wait_s)
        return service.describe(job, base_url(request))

    @app.get("/v1/jobs/{job_id}/outputs/{name}")
    def get_output(job_id: str, name: str, request: Request):
        key = authenticate(request)
        job = service.get(key, job_id)
        match = [k for k in job.outputs if k.rsplit("/", 1)[-1] == name]
        if not match or not isinstance(storage, LocalStore):
            raise v.RequestError(404, "not_found", f"job {job_id} has no output {name}", "name")
        return FileResponse(storage._path(match[0]), media_type="video/mp4", filename=name)

    @app.get("/v1/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request):
        key = await run_in_threadpool(authenticate, request)
        await run_in_threadpool(service.get, key, job_id)  # 404 before the stream starts

        async def stream():
            after = 0
            while not await request.is_disconnected():
                events = await run_in_threadpool(service.store.events, job_id, after)
                for event in events:
                    after = event["id"]
                    data = json.dumps({"kind": event["kind"], "at": event["at"], **event["data"]})
                    yield f"id: {after}\nevent: {event['kind']}\ndata: {data}\n\n"
                job = await run_in_threadpool(service.store.job, job_id)
                if job is None or (job.state in FINAL_STATES and not events):
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    @app.get("/v1/templates")
    def templates(request: Request):
        authenticate(request)
        return {"templates": service.describe_templates()}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/readyz")
    def readyz():
        checks = {}
        for name, check in (
            ("database", store.ping),
            ("storage", storage.ping),
            ("broker", _broker_ping(settings)),
        ):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                checks[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ready = all(val == "ok" for val in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics_route():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return BodyLimit(app, settings.max_upload_bytes + 1024 * 1024)  # (room for the form's fields)


#: The two request bodies of ``POST /v1/jobs``, for the OpenAPI page (the route reads either).
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "audio"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "audio": {"type": "string", "format": "binary"},
                        "template": {"type": "string", "example": "sonic_lite_balanced"},
                        "tier": {"type": "string", "enum": ["fast", "balanced", "hq"]},
                        "priority": {"type": "string", "enum": ["P0", "P1", "P2"]},
                        "seed": {"type": "integer"},
                        "webhook_url": {"type": "string"},
                    },
                    "additionalProperties": {"type": "string", "description": "template input Title.input"},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image", "audio"],
                    "properties": {
                        "image": {"type": "string", "description": "key of an object in the store"},
                        "audio": {"type": "string", "description": "key of an object in the store"},
                        "template": {"type": "string"},
                        "tier": {"type": "string", "enum": ["fast", "balanced", "hq"]},
                        "priority": {"type": "string", "enum": ["P0", "P1", "P2"]},
                        "seed": {"type": "integer"},
                        "duration": {"type": "number"},
                        "webhook_url": {"type": "string"},
                        "inputs": {"type": "object", "description": '{"Title.input": value}'},
                    },
                },
                "example": {"image": "uploads/face.jpg", "audio": "uploads/speech.wav", "tier": "fast"},
            },
        },
    }
}


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise v.invalid("body", f"the body is not valid JSON ({exc}); send a JSON object") from None


def _file(form, name: str) -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise v.invalid(name, f"{name}: send the file as multipart form field '{name}'", "missing")
    return value


async def _spool(upload: UploadFile, dest: Path) -> Upload:
    with dest.open("wb") as out:
        while chunk := await upload.read(1024 * 1024):
            out.write(chunk)
    return Upload(dest, upload.filename or dest.name)


def _interrupt(background: list):
    def interrupt(job) -> None:
        for worker in background:
            if hasattr(worker, "interrupt"):
                worker.interrupt(job)

    return interrupt


def _broker_ping(settings: ServeSettings):
    def ping() -> None:
        if settings.broker_url is None:
            return
        from kombu import Connection

        with Connection(settings.broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)

    return ping


def _store_numbers(store: JobStore, outbox: Outbox, pools: tuple[int, ...] | None = None) -> dict:
    from sqlalchemy import func, select

    from ..fleet.queues import DEFAULT_POOLS, PoolError, pool_for
    from ..store.schema import jobs as jobs_t

    queued: dict[tuple[str, str], int] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(jobs_t.c.resolution, jobs_t.c.priority, func.count())
            .where(jobs_t.c.state.in_(("queued", "failed")))
            .group_by(jobs_t.c.resolution, jobs_t.c.priority)
        )
        for resolution, priority, n in rows:
            try:
                pool = str(pool_for(resolution, pools or DEFAULT_POOLS))
            except PoolError:
                pool = "none"
            key = (pool, f"P{priority}")
            queued[key] = queued.get(key, 0) + n
    return {"jobs": store.counts(), "queued": queued, "webhook_backlog": outbox.backlog()}
