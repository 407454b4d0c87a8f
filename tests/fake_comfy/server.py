"""A fake ComfyUI 0.3.6x server on loopback, with fault injection, for protocol tests.

It is a real aiohttp server speaking ComfyUI's HTTP + websocket API (DESIGN.md
section 6). Each part says which ComfyUI source behaviour it mirrors:
`server.py` (PromptServer routes and websocket), `execution.py` (PromptQueue,
PromptExecutor, validate_prompt) and `main.py` (prompt_worker). Nothing here
runs a model: a job sleeps `run_seconds`, sends progress, and its output node
writes a tiny real H.264+AAC MP4.

Two ways to run it:
- in-thread: ``with FakeComfy(run_seconds=0.05) as srv: ComfyClient(srv.url)``
  (the event loop runs on a daemon thread; kill()/revive()/restart() simulate a
  host that dies and comes back on the same port);
- as a process: ``python -m tests.fake_comfy --port N --root DIR`` (see
  process.py's FakeComfyProcess), for tests that kill -9 the host.

Things that are NOT ComfyUI behaviour are marked TEST-ONLY: the fault knobs,
the probes (`executions`, `submissions`, `uploads`, `outputs_written`), the
/_fake/* control routes and the optional bearer-token check (a proxy in front
of ComfyUI would do that).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import mimetypes
import os
import random as _random
import re
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .catalog import VIDEO_OUTPUT_NODES, build_object_info
from .media import preview_message, tiny_mp4

log = logging.getLogger("fake_comfy")

EXECUTIONS_FILE = "_fake_executions.jsonl"  # TEST-ONLY probe that survives a process kill
_OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might "
    "have accidentally set the batch_size to a large number."
)
_CUDA_OOM = (
    "torch.OutOfMemoryError",
    "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 23.65 GiB "
    "of which 1.10 GiB is free.",
)
#: execution.py MAXIMUM_HISTORY_SIZE: ComfyUI keeps this many finished prompts in memory.
MAXIMUM_HISTORY_SIZE = 10000
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ROUTE_KEYS = (
    "/prompt",
    "/history",
    "/queue",
    "/interrupt",
    "/upload/image",
    "/view",
    "/system_stats",
    "/object_info",
    "/ws",
)


@dataclass
class Faults:
    """TEST-ONLY fault injection. Counters mean "the next N ..."; set them any time (thread-safe enough).

    http_500:          {route: N}: the next N requests to route answer HTTP 500 (routes: ROUTE_KEYS,
                       "/history" covers /history/{id}, "/ws" refuses the websocket upgrade).
    validation_error:  next N POST /prompt answer 400 prompt_outputs_failed_validation.
    oom:               next N jobs end with execution_error torch.OutOfMemoryError ("CUDA out of memory").
    input_error:       next N jobs end with execution_error SonicInputError (no face).
    exec_error:        next N jobs end with execution_error RuntimeError (an unexpected host exception).
    model_error:       next N jobs end with execution_error SonicModelError in SONIC_ModelLoader (weights
                       missing), exception_type with the module path real ComfyUI sends for a custom
                       node ("<custom_nodes dir>/ComfyUI-Sonic.nodes.engine.errors.SonicModelError").
    model_missing:     rule: while True EVERY job ends like model_error (a host without the Sonic weights).
    drop_socket:       next N jobs: the server closes the job's websocket after the first progress step.
    silent_socket:     while True no websocket message is sent at all (the socket stays open).
    die_mid_job:       next N jobs: the host dies half-way through the job (in-thread: stops listening and
                       loses queue + history, see FakeComfy.kill; process: exits with code 17).
    oom_above:         rule: a job whose SONIC_PreData.min_resolution is above this ends with
                       SonicOutOfMemoryError naming the next lower tier.
    input_error_marker: rule: a job with any string input containing this text (e.g. an uploaded
                       image named "noface.png") ends with SonicInputError.
    slow:              seconds per job, overrides the server's run_seconds when set.
    oom_rate:          rule: this share of jobs (0..1, drawn at random) ends with torch.OutOfMemoryError
                       half-way through (on top of the job-time model's own OOM rate).
    """

    http_500: dict[str, int] = field(default_factory=dict)
    validation_error: int = 0
    oom: int = 0
    input_error: int = 0
    exec_error: int = 0
    model_error: int = 0
    model_missing: bool = False
    drop_socket: int = 0
    silent_socket: bool = False
    die_mid_job: int = 0
    oom_above: int | None = None
    input_error_marker: str | None = "noface"
    slow: float | None = None
    oom_rate: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def take(self, name: str) -> bool:
        """Consume one unit of counter `name`; True when the fault fires now."""
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False

    def take_500(self, route: str) -> bool:
        with self._lock:
            left = self.http_500.get(route, 0)
            if left > 0:
                self.http_500[route] = left - 1
                return True
            return False

    def update(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        with self._lock:
            for key, value in values.items():
                if key not in names:
                    raise ValueError(f"unknown fault {key!r}; known: {sorted(names)}")
                setattr(self, key, dict(value) if key == "http_500" else value)

    def to_dict(self) -> dict:
        return asdict(self)


class _Interrupted(Exception):
    pass


class _NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class _Died(Exception):
    pass


class FakeComfy:
    """A ComfyUI 0.3.6x look-alike on 127.0.0.1. See the module docstring and Faults for the knobs.

    Options:
      root:            folder holding input/, output/, temp/ (a temp dir, removed on stop, when None).
      port:            0 picks a free port once; kill()/revive()/restart() keep it.
      run_seconds:     simulated execution time of one job (spread over progress_steps progress messages).
      history_lag:     seconds between execution_success and the history write (ComfyUI writes history
                       in prompt_worker after PromptExecutor.execute returns, so a client that reads
                       history on execution_success can see {}).
      end_before_history: TEST-ONLY harsher race: send the final `executing` node=None before the
                       history write (after history_lag) instead of after it.
      output_key:      "auto" (VHS_VideoCombine -> "gifs", other video nodes -> "images" + animated),
                       "images", "gifs", or "both" (the same file under both keys).
      token / required_headers: TEST-ONLY proxy auth: every route (not /_fake) answers 401 unless the
                       request carries "Authorization: Bearer <token>" / all of required_headers.
      upload_limit_bytes: aiohttp client_max_size (ComfyUI --max-upload-size, default 100 MB) -> 413.
      object_info:     full /object_info override; model_files: the SONIC_ModelLoader file choices.
      comfyui_version, vram_total_gb, vram_free_gb: what /system_stats reports.
      strict_prompt_id: reject a client prompt_id that is not a canonical lowercase UUID (newer ComfyUI
                       does; 0.3.6x accepted any string). Default True so the runner stays compatible.
      send_previews:   send one binary preview frame per job (clients must skip binary messages).
      auto_revive_after: after a die_mid_job death, come back (empty queue/history) after N seconds.
      die_mode:        "stop" (in-thread: stop listening) or "exit" (process: os._exit(17)).
      faults:          a Faults instance (or dict) to start with.
      tls_certfile / tls_keyfile: serve https/wss (ComfyUI --tls-certfile/--tls-keyfile).
      job_times:       TEST-ONLY a timing.JobClock: per-tier job-time distributions (tail, OOM rate) instead
                       of run_seconds, for load tests (``faults.slow`` still overrides it).
      pack_nodes:      describe our nodes from comfyui_sonic.NODE_CLASS_MAPPINGS (their real required
                       inputs are then validated); False = the fixed stand-in schemas of catalog.py, for
                       protocol tests that must not change when the nodes gain inputs.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        run_seconds: float = 0.05,
        progress_steps: int = 4,
        history_lag: float = 0.0,
        end_before_history: bool = False,
        output_key: str = "auto",
        token: str | None = None,
        required_headers: dict[str, str] | None = None,
        upload_limit_bytes: int = 100 * 1024 * 1024,
        object_info: dict | None = None,
        model_files: list[str] | None = None,
        comfyui_version: str = "0.3.66",
        vram_total_gb: float = 24.0,
        vram_free_gb: float = 20.0,
        strict_prompt_id: bool = True,
        send_previews: bool = True,
        auto_revive_after: float | None = None,
        die_mode: str = "stop",
        faults: Faults | dict | None = None,
        tls_certfile: str | Path | None = None,
        tls_keyfile: str | Path | None = None,
        pack_nodes: bool = True,
        job_times: Any = None,
    ) -> None:
        if output_key not in ("auto", "images", "gifs", "both"):
            raise ValueError(f"output_key must be auto/images/gifs/both, not {output_key!r}")
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="fake_comfy_"))
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        self.temp_dir = self.root / "temp"
        for d in (self.input_dir, self.output_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.run_seconds = run_seconds
        self.progress_steps = max(1, progress_steps)
        self.history_lag = history_lag
        self.end_before_history = end_before_history
        self.output_key = output_key
        self.required_headers = dict(required_headers or {})
        if token:
            self.required_headers["Authorization"] = f"Bearer {token}"
        self.upload_limit_bytes = upload_limit_bytes
        self._object_info_override = object_info
        self.model_files = model_files
        self.comfyui_version = comfyui_version
        self.vram_total_gb = vram_total_gb
        self.vram_free_gb = vram_free_gb
        self.strict_prompt_id = strict_prompt_id
        self.send_previews = send_previews
        self.auto_revive_after = auto_revive_after
        self.die_mode = die_mode
        self.pack_nodes = pack_nodes
        self.job_times = job_times
        self.busy_seconds = 0.0  # TEST-ONLY probe: time spent executing (a host's utilisation)
        self.tls = (str(tls_certfile), str(tls_keyfile)) if tls_certfile and tls_keyfile else None
        if isinstance(faults, dict):
            self.faults = Faults()
            self.faults.update(faults)
        else:
            self.faults = faults or Faults()

        # TEST-ONLY probes, kept across kill/revive/restart (a real host would not remember anything).
        self.executions: list[str] = self._load_executions()
        self.submissions: list[str] = []
        self.uploads: list[dict] = []
        self.outputs_written: list[str] = []
        self._counters: dict[tuple[str, str], int] = {}  # output file counters (files outlive restarts)
        self.requests: dict[str, int] = {}
        self.alive = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._worker_task: asyncio.Task | None = None
        self._reset_volatile()

    # ------------------------------------------------------------------ lifecycle (in-thread mode)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def ws_url(self, client_id: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/ws?clientId={client_id}"

    def __enter__(self) -> FakeComfy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeComfy:
        """Start the event loop thread and listen; returns self (srv.url is then valid)."""
        if self._thread is not None:
            raise RuntimeError("FakeComfy already started")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._startup())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-comfy", daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("fake ComfyUI did not start")
        return self

    def stop(self) -> None:
        """Shut down and remove the temp root if this server made it."""
        if self._loop is not None and self._thread is not None:
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
        self._thread = None
        self._loop = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """The host dies: connections close, the port refuses, queue and history are lost."""
        self._call(self._shutdown())

    def revive(self) -> None:
        """The host comes back on the same port with an empty queue and history (files on disk stay)."""
        self._call(self._startup())

    def restart(self, wipe_inputs: bool = False) -> None:
        """kill() then revive(): mirrors a ComfyUI process restart (queue and history live in memory only).

        wipe_inputs: the input folder comes back empty too, like a container restarted on fresh
        storage; prompts naming files uploaded before then fail LoadImage/LoadAudio validation.
        """
        self.kill()
        if wipe_inputs:
            shutil.rmtree(self.input_dir, ignore_errors=True)
            self.input_dir.mkdir(parents=True, exist_ok=True)
        self.revive()

    def set_faults(self, **values: Any) -> None:
        self.faults.update(values)

    def state(self) -> dict:
        """TEST-ONLY probes as one dict (same shape as GET /_fake/state)."""
        return {
            "executions": list(self.executions),
            "submissions": list(self.submissions),
            "uploads": list(self.uploads),
            "outputs_written": list(self.outputs_written),
            "requests": dict(self.requests),
            "faults": self.faults.to_dict(),
            "alive": self.alive,
            "busy_seconds": self.busy_seconds,
            "running": self.running is not None,
            "queued": len(self.queue),
        }

    def _call(self, coro: Any, timeout: float = 20) -> Any:
        assert self._loop is not None, "FakeComfy is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------------ state

    def _reset_volatile(self) -> None:
        """Everything a ComfyUI restart loses (execution.py PromptQueue + PromptServer attributes)."""
        self.queue: list[tuple] = []  # heap of (number, prompt_id, prompt, extra_data, outputs_to_execute)
        self.running: tuple | None = None
        self.history: dict[str, dict] = {}
        self.number = 0
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.last_node_id: str | None = None
        self.client_id: str | None = None
        self.node_cache: dict[str, tuple[str, dict | None]] = {}
        self._interrupt = False
        self._wake: asyncio.Event | None = None
        self._schema_cache: dict | None = None

    def _load_executions(self) -> list[str]:
        path = self.root / EXECUTIONS_FILE
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line)["prompt_id"])
            except (ValueError, KeyError):
                continue
        return out

    def _record_execution(self, prompt_id: str) -> None:
        self.executions.append(prompt_id)
        with open(self.root / EXECUTIONS_FILE, "a") as fh:
            fh.write(json.dumps({"prompt_id": prompt_id, "t": time.time()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    async def _startup(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, tiny_mp4)  # encode once, before listening
        self._reset_volatile()
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=self.upload_limit_bytes, middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        ssl_context = None
        if self.tls:  # server.py start_multi_address: --tls-certfile/--tls-keyfile -> https
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(certfile=self.tls[0], keyfile=self.tls[1])
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._worker_task = asyncio.get_running_loop().create_task(self._prompt_worker())
        self.alive = True

    async def _shutdown(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if self._worker_task is not None and self._worker_task is not asyncio.current_task():
            self._worker_task.cancel()
            try:
                await self._worker_task
            except (asyncio.CancelledError, Exception):
                pass
        self._worker_task = None
        for ws in list(self.sockets.values()):
            try:
                await ws.close()
            except Exception:
                pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._reset_volatile()

    async def _die(self) -> None:
        """die_mid_job: the process crashes (in a subprocess it really exits)."""
        log.warning("fake ComfyUI: dying mid-job (injected)")
        if self.die_mode == "exit":
            os._exit(17)
        await self._shutdown()
        if self.auto_revive_after is not None:
            await asyncio.sleep(self.auto_revive_after)
            await self._startup()

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        if path.startswith("/_fake/"):  # TEST-ONLY control routes: never faulted, never authenticated
            return await handler(request)
        for name, value in self.required_headers.items():  # TEST-ONLY: what an auth proxy would do
            if request.headers.get(name) != value:
                return web.json_response({"error": "unauthorized"}, status=401)
        key = next((k for k in ROUTE_KEYS if path == k or path.startswith(k + "/")), path)
        self.requests[key] = self.requests.get(key, 0) + 1
        if self.faults.take_500(key):
            return web.Response(status=500, text="500: Internal Server Error (injected by fake_comfy)")
        return await handler(request)

    def _add_routes(self, app: web.Application) -> None:
        routes = [
            ("GET", "/ws", self._ws),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/history", self._get_history_all),
            ("GET", "/history/{prompt_id}", self._get_history),
            ("POST", "/history", self._post_history),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/upload/image", self._upload_image),
            ("GET", "/view", self._view),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/object_info", self._object_info),
            ("GET", "/object_info/{node_class}", self._object_info_one),
        ]
        # server.py add_routes(): every route exists both plain and under /api.
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/_fake/state", self._fake_state)
        app.router.add_post("/_fake/faults", self._fake_faults)
        app.router.add_get("/_fake/stats", self._fake_stats)

    async def _fake_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _fake_stats(self, request: web.Request) -> web.Response:
        """TEST-ONLY: the counters a load test polls (cheap: no lists)."""
        return web.json_response(
            {
                "busy_seconds": self.busy_seconds,
                "running": self.running is not None,
                "queued": len(self.queue),
                "executions": len(self.executions),
                "outputs_written": len(self.outputs_written),
                "oom_rate": self.faults.oom_rate,
            }
        )

    async def _fake_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.update(await request.json())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults.to_dict())

    # ------------------------------------------------------------------ websocket (server.py websocket_handler)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=0.5)  # short close handshake: kill() must not stall on a client
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)  # "Reusing existing session, remove old"
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            # server.py: on reconnect, the currently executing client gets the current node, WITHOUT prompt_id.
            if self.client_id == sid and self.last_node_id is not None:
                await self._send("executing", {"node": self.last_node_id}, sid)
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            # server.py pops the sid unconditionally, even if a newer socket took it over (a real race).
            self.sockets.pop(sid, None)
        return ws

    async def _send(self, event: str, data: Any, sid: str | None = None) -> None:
        """server.py send_json/send_bytes: sid None broadcasts; a sid that is not connected gets nothing."""
        if self.faults.silent_socket:
            return
        targets = (
            list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        )
        for ws in targets:
            try:
                if isinstance(data, (bytes, bytearray)):
                    await ws.send_bytes(bytes(data))
                else:
                    await ws.send_str(json.dumps({"type": event, "data": data}))
            except (ConnectionError, RuntimeError):
                pass  # send_socket_catch_exception

    def _queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": len(self.queue) + (1 if self.running else 0)}}

    async def _queue_updated(self) -> None:
        await self._send("status", {"status": self._queue_info()})

    # ------------------------------------------------------------------ /prompt (server.py post_prompt + execution.validate_prompt)

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid json"}, status=400)
        if "number" in body:
            number = float(body["number"])
        else:
            number = self.number
            if body.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in body:
            return self._prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        prompt = body["prompt"]
        prompt_id = body.get("prompt_id")
        if prompt_id is None:
            prompt_id = str(uuid.uuid4())
        elif self.strict_prompt_id and not (isinstance(prompt_id, str) and _UUID_RE.match(prompt_id)):
            return self._prompt_error(
                "invalid_prompt_id",
                "prompt_id must be a valid UUID",
                "prompt_id must be a UUID string in canonical lowercase hyphenated form",
            )
        if self.faults.take("validation_error"):
            nodes = prompt if isinstance(prompt, dict) else {}
            node_id = next((k for k, n in nodes.items() if n.get("class_type") == "SONIC_PreData"), None)
            node_id = node_id or next(iter(nodes), "1")
            node_errors = {
                node_id: {
                    "errors": [
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": "min_resolution: '9999' not in [384, 512, 768, 1024] (injected)",
                            "extra_info": {"input_name": "min_resolution"},
                        }
                    ],
                    "dependent_outputs": [],
                    "class_type": prompt.get(node_id, {}).get("class_type", "")
                    if isinstance(prompt, dict)
                    else "",
                }
            }
            return self._prompt_error(
                "prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors
            )
        ok, error, outputs, node_errors = self._validate(prompt)
        if not ok:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        extra_data["create_time"] = int(time.time() * 1000)
        heapq.heappush(self.queue, (number, prompt_id, prompt, extra_data, outputs))
        self.submissions.append(prompt_id)
        if self._wake is not None:
            self._wake.set()
        await self._queue_updated()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    @staticmethod
    def _prompt_error(kind: str, message: str, details: str, node_errors: dict | None = None) -> web.Response:
        error = {"type": kind, "message": message, "details": details, "extra_info": {}}
        return web.json_response({"error": error, "node_errors": node_errors or {}}, status=400)

    def _object_info_now(self) -> dict:
        """GET /object_info: LoadImage/LoadAudio list the input folder as it is now."""
        files = [p.relative_to(self.input_dir).as_posix() for p in self.input_dir.rglob("*") if p.is_file()]
        return build_object_info(files, self.model_files, self._object_info_override, self.pack_nodes)

    def _schema(self) -> dict:
        """Node schemas for validation and execution (no file lists), described once per start."""
        if self._schema_cache is None:
            self._schema_cache = build_object_info(
                [], self.model_files, self._object_info_override, self.pack_nodes
            )
        return self._schema_cache

    def _validate(self, prompt: Any) -> tuple[bool, dict | None, list[str], dict]:
        """execution.py validate_prompt: class checks, outputs, then per-output input checks."""
        if not isinstance(prompt, dict):
            return False, _err("invalid_prompt", "Invalid prompt: prompt must be an object"), [], {}
        info = self._schema()
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    False,
                    _err(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
            if node["class_type"] not in info:
                return (
                    False,
                    _err(
                        "invalid_prompt",
                        f"Cannot execute because node {node['class_type']} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
        outputs = [nid for nid, node in prompt.items() if info[node["class_type"]].get("output_node")]
        if not outputs:
            return False, _err("prompt_no_outputs", "Prompt has no outputs"), [], {}
        node_errors: dict[str, dict] = {}
        for nid in self._needed_nodes(prompt, outputs):
            node = prompt[nid]
            errors = self._validate_node(node, info[node["class_type"]], prompt)
            if errors:
                node_errors[nid] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": node["class_type"],
                }
        if node_errors:
            return (
                False,
                _err("prompt_outputs_failed_validation", "Prompt outputs failed validation"),
                [],
                node_errors,
            )
        return True, None, outputs, {}

    def _validate_node(self, node: dict, spec: dict, prompt: dict) -> list[dict]:
        errors = []
        inputs = node.get("inputs") or {}
        for name in (spec.get("input") or {}).get("required", {}):
            if name not in inputs:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
        for name, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) not in prompt:
                errors.append(
                    {
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": f"{name}: linked node {value[0]} does not exist",
                        "extra_info": {"input_name": name},
                    }
                )
        # LoadImage / LoadAudio VALIDATE_INPUTS: the file must exist in the input folder (subfolders allowed).
        file_input = {
            "LoadImage": ("image", "Invalid image file"),
            "LoadAudio": ("audio", "Invalid audio file"),
        }
        if node["class_type"] in file_input:
            name, problem = file_input[node["class_type"]]
            value = inputs.get(name)
            if isinstance(value, str) and not self._input_exists(value):
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"{name} - {problem}: {value}",
                        "extra_info": {"input_name": name},
                    }
                )
        return errors

    def _input_exists(self, value: str) -> bool:
        value = value.removesuffix(" [input]")
        if value.startswith("/") or ".." in value:
            return False
        return (self.input_dir / value).is_file()

    @staticmethod
    def _needed_nodes(prompt: dict, outputs: list[str]) -> list[str]:
        """Nodes the outputs depend on, dependencies first (ExecutionList's topological order)."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen or nid not in prompt:
                return
            seen.add(nid)
            for value in (prompt[nid].get("inputs") or {}).values():
                if isinstance(value, list) and len(value) == 2:
                    visit(str(value[0]))
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    # ------------------------------------------------------------------ queue / history routes

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_history_all(self, request: web.Request) -> web.Response:
        return web.json_response(self.history)

    async def _get_history(self, request: web.Request) -> web.Response:
        # PromptQueue.get_history(prompt_id): {} until task_done() wrote it (and for unknown ids).
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.history.clear()
        for pid in body.get("delete", []):
            self.history.pop(pid, None)
        return web.Response(status=200)

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [list(self.running[:5])] if self.running else []
        pending = [list(item[:5]) for item in sorted(self.queue)]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.queue.clear()
        for pid in body.get("delete", []):
            self.queue = [item for item in self.queue if item[1] != pid]
        heapq.heapify(self.queue)
        await self._queue_updated()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        target = body.get("prompt_id") if isinstance(body, dict) else None
        # server.py post_interrupt: a prompt_id interrupts only if it is the running one; none = global.
        if self.running and (not target or self.running[1] == target):
            self._interrupt = True
        return web.Response(status=200)

    # ------------------------------------------------------------------ files (server.py image_upload / view_image)

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()  # aiohttp answers 413 itself above client_max_size
        image = post.get("image")
        if image is None or not hasattr(image, "file") or not image.filename:
            return web.Response(status=400)
        kind = post.get("type") or "input"
        base = {"input": self.input_dir, "temp": self.temp_dir, "output": self.output_dir}.get(str(kind))
        if base is None:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        folder = (base / os.path.normpath(subfolder)).resolve() if subfolder else base.resolve()
        filename = str(image.filename)
        target = (folder / filename).resolve()
        if os.path.commonpath((str(base.resolve()), str(target))) != str(base.resolve()):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        stem, ext = os.path.splitext(filename)
        duplicate = False
        overwrite = str(post.get("overwrite", "")) in ("true", "1")
        if not overwrite:
            digest = hashlib.sha256(data).hexdigest()
            i = 1
            while target.exists():
                # compare_image_hash(): same bytes under this name -> reuse it, else try "name (i).ext"
                if hashlib.sha256(target.read_bytes()).hexdigest() == digest:
                    duplicate = True
                    break
                filename = f"{stem} ({i}){ext}"
                target = folder / filename
                i += 1
        if not duplicate:
            target.write_bytes(data)
        self.uploads.append(
            {"name": filename, "subfolder": subfolder, "reused": duplicate, "size": len(data)}
        )
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        filename = query.get("filename")
        if not filename:
            return web.Response(status=404)
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        base = {"input": self.input_dir, "temp": self.temp_dir, "output": self.output_dir}.get(
            query.get("type", "output")
        )
        if base is None:
            return web.Response(status=400)
        folder = base
        if "subfolder" in query:
            folder = (base / query["subfolder"]).resolve()
            if os.path.commonpath((str(base.resolve()), str(folder))) != str(base.resolve()):
                return web.Response(status=403)
        path = folder / os.path.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(
            path, headers={"Content-Disposition": f'filename="{path.name}"', "Content-Type": content_type}
        )

    # ------------------------------------------------------------------ info routes

    async def _system_stats(self, request: web.Request) -> web.Response:
        gib = 1024**3
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 64 * gib,
                    "ram_free": 48 * gib,
                    "comfyui_version": self.comfyui_version,
                    "python_version": "3.11 (fake_comfy)",
                    "pytorch_version": "2.5.1+cu124",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen", self.host, "--port", str(self.port)],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA Fake GPU : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": int(self.vram_total_gb * gib),
                        "vram_free": int(self.vram_free_gb * gib),
                        "torch_vram_total": int(self.vram_total_gb * gib * 0.1),
                        "torch_vram_free": int(self.vram_total_gb * gib * 0.05),
                    }
                ],
            }
        )

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self._object_info_now(), dumps=_dumps)

    async def _object_info_one(self, request: web.Request) -> web.Response:
        info = self._object_info_now()
        name = request.match_info["node_class"]
        return web.json_response({name: info[name]} if name in info else {}, dumps=_dumps)

    # ------------------------------------------------------------------ execution (main.py prompt_worker + execution.py)

    async def _prompt_worker(self) -> None:
        """One prompt at a time, lowest `number` first (PromptQueue is a heap)."""
        assert self._wake is not None
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = heapq.heappop(self.queue)
            self.running = item
            await self._queue_updated()
            began = time.monotonic()
            try:
                await self._execute(item)
            except _Died:
                await self._die()
                return
            finally:
                self.busy_seconds += time.monotonic() - began

    async def _execute(self, item: tuple) -> None:
        number, prompt_id, prompt, extra_data, outputs = item
        info = self._schema()
        self.client_id = extra_data.get("client_id")  # PromptExecutor.execute: server.client_id
        self._interrupt = False
        self._record_execution(prompt_id)
        messages: list[list] = []
        client = self.client_id

        async def add_message(event: str, data: dict) -> None:
            # PromptExecutor.add_message: kept in history status, sent to the prompt's client only.
            messages.append([event, data])
            await self._send(event, data, client)

        now = lambda: int(time.time() * 1000)  # noqa: E731
        await add_message("execution_start", {"prompt_id": prompt_id, "timestamp": now()})
        order = self._needed_nodes(prompt, outputs)
        signatures = self._signatures(prompt, order)
        cached = [nid for nid in order if self.node_cache.get(nid, ("",))[0] == signatures[nid]]
        heavy = _pick(prompt, order, "SONIC_Inference") or outputs[-1]
        first = _pick(prompt, order, "SONIC_PreData") or order[0]
        loader = _pick(prompt, order, "SONIC_ModelLoader") or first
        drop = self.faults.take("drop_socket")
        die = self.faults.take("die_mid_job")
        failure = self._planned_failure(prompt)
        seconds = self.faults.slow if self.faults.slow is not None else self.run_seconds
        if self.job_times is not None and self.faults.slow is None:
            seconds, oom = self.job_times.plan(prompt, self.faults.oom_rate)
            if oom and failure is None:
                failure = ("heavy",) + _CUDA_OOM
        elif failure is None and self.faults.oom_rate and _random.random() < self.faults.oom_rate:
            seconds, failure = seconds / 2, ("heavy",) + _CUDA_OOM
        if failure and failure[0] == "loader":
            # TEST-ONLY: the weights vanished since a cached load; run the loader again so it fails.
            self.node_cache.pop(loader, None)
            cached = [nid for nid in cached if nid != loader]
        await add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": now()})
        ui_outputs: dict[str, dict] = {}
        executed: list[str] = []
        try:
            for nid in order:
                node = prompt[nid]
                if nid in cached:
                    cached_ui = self.node_cache[nid][1]
                    if cached_ui is not None:  # execution.py: a cached output node re-sends its ui
                        ui_outputs[nid] = cached_ui
                        await self._send(
                            "executed",
                            {"node": nid, "display_node": nid, "output": cached_ui, "prompt_id": prompt_id},
                            client,
                        )
                    continue
                self.last_node_id = nid
                await self._send(
                    "executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, client
                )
                if failure and failure[0] == "loader" and nid == loader:
                    raise _NodeFailure(failure[1], failure[2])
                if failure and failure[0] == "pre" and nid == first:
                    raise _NodeFailure(failure[1], failure[2])
                if nid == heavy:
                    await self._run_steps(prompt_id, nid, seconds, drop, die, client)
                    if failure and failure[0] == "heavy":
                        raise _NodeFailure(failure[1], failure[2])
                ui = None
                if node["class_type"] in VIDEO_OUTPUT_NODES or info[node["class_type"]].get("output_node"):
                    ui = self._write_output(node)
                    ui_outputs[nid] = ui
                    await self._send(
                        "executed",
                        {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id},
                        client,
                    )
                self.node_cache[nid] = (signatures[nid], ui)
                executed.append(nid)
        except _Interrupted:
            node = self.last_node_id or ""
            await add_message(
                "execution_interrupted",
                {
                    "prompt_id": prompt_id,
                    "node_id": node,
                    "node_type": prompt.get(node, {}).get("class_type", ""),
                    "executed": executed,
                    "timestamp": now(),
                },
            )
            return await self._finish(item, ui_outputs, messages, success=False)
        except _NodeFailure as exc:
            node = self.last_node_id or ""
            self.node_cache.pop(node, None)
            await add_message(
                "execution_error",
                {
                    "prompt_id": prompt_id,
                    "node_id": node,
                    "node_type": prompt.get(node, {}).get("class_type", ""),
                    "executed": executed,
                    # execution.py: "{ex}\n{tips}", tips only for an OOM that comfy's is_oom() recognises
                    "exception_message": f"{exc.message}\n{_OOM_TIPS if exc.exception_type == 'torch.OutOfMemoryError' else ''}",
                    "exception_type": exc.exception_type,
                    "traceback": [
                        "Traceback (most recent call last):\n",
                        f"{exc.exception_type}: {exc.message}\n",
                    ],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": now(),
                },
            )
            return await self._finish(item, ui_outputs, messages, success=False)
        # classic cache: entries of nodes not in this prompt are dropped after the run
        self.node_cache = {nid: v for nid, v in self.node_cache.items() if nid in prompt}
        await add_message("execution_success", {"prompt_id": prompt_id, "timestamp": now()})
        await self._finish(item, ui_outputs, messages, success=True)

    async def _finish(self, item: tuple, ui_outputs: dict, messages: list, success: bool) -> None:
        """main.py prompt_worker: task_done() writes history, THEN `executing` node=None goes to the client."""
        prompt_id = item[1]
        end = {"node": None, "prompt_id": prompt_id}
        if self.end_before_history:
            await self._send("executing", end, self.client_id)
        if self.history_lag:
            await asyncio.sleep(self.history_lag)
        self.history[prompt_id] = {
            "prompt": list(item[:5]),
            "outputs": ui_outputs,
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": messages,
            },
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None} for nid in ui_outputs},
        }
        if len(self.history) > MAXIMUM_HISTORY_SIZE:  # PromptQueue.task_done: the oldest goes first
            self.history.pop(next(iter(self.history)))
        self.running = None
        self.last_node_id = None
        if not self.end_before_history and self.client_id is not None:
            await self._send("executing", end, self.client_id)
        await self._queue_updated()

    async def _run_steps(
        self, prompt_id: str, nid: str, seconds: float, drop: bool, die: bool, client: str | None
    ) -> None:
        steps = self.progress_steps
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            if self._interrupt:  # comfy.model_management.throw_exception_if_processing_interrupted()
                raise _Interrupted()
            if die and step > steps // 2:
                raise _Died()
            await self._send(
                "progress", {"value": step, "max": steps, "prompt_id": prompt_id, "node": nid}, client
            )
            await self._send(
                "progress_state",
                {
                    "prompt_id": prompt_id,
                    "nodes": {nid: {"value": step, "max": steps, "state": "running", "node_id": nid}},
                },
                client,
            )
            if step == 1 and self.send_previews:
                await self._send("preview", preview_message(), client)
            if drop and step == 1 and client in self.sockets:
                await self.sockets[client].close()  # TEST-ONLY: the network drops the client's socket

    def _planned_failure(self, prompt: dict) -> tuple[str, str, str] | None:
        """Decide up front how this job fails, if it does: (where, exception_type, message)."""
        if self.faults.model_missing or self.faults.take("model_error"):
            # ComfyUI's full_type_name(): module + "." + qualname; a custom node's module name is
            # its folder path (dots in it replaced), so the type carries that path as a prefix.
            return (
                "loader",
                "/tmp/comfy/custom_nodes/ComfyUI-Sonic.nodes.engine.errors.SonicModelError",
                "sonic weights: unet.pth not found in models/sonic; put the Sonic weights there "
                "(see the README) or pick another checkpoint",
            )
        marker = self.faults.input_error_marker
        strings = [v for n in prompt.values() for v in (n.get("inputs") or {}).values() if isinstance(v, str)]
        hit = next((s for s in strings if marker and marker in s), None)
        if hit or self.faults.take("input_error"):
            return (
                "pre",
                "comfyui_sonic.nodes.engine.errors.SonicInputError",
                f"image: no face found in {hit or 'the image'}; use a photo with one clearly visible, front-facing face",
            )
        resolution = next(
            (
                n["inputs"].get("min_resolution")
                for n in prompt.values()
                if n.get("class_type") == "SONIC_PreData" and isinstance(n.get("inputs"), dict)
            ),
            None,
        )
        limit = self.faults.oom_above
        if limit is not None and isinstance(resolution, int) and resolution > limit:
            lower = [t for t in (384, 512, 768, 1024) if t < resolution]
            hint = f"retry with min_resolution={lower[-1]}" if lower else "no lower resolution tier is left"
            return (
                "heavy",
                "comfyui_sonic.nodes.engine.errors.SonicOutOfMemoryError",
                f"out of memory at min_resolution={resolution}; {hint}",
            )
        if self.faults.take("oom"):
            return ("heavy",) + _CUDA_OOM
        if self.faults.take("exec_error"):
            return ("heavy", "RuntimeError", "Expected all tensors to be on the same device (injected)")
        return None

    @staticmethod
    def _signatures(prompt: dict, order: list[str]) -> dict[str, str]:
        """Per-node cache keys: class + inputs, links replaced by their source's key (like CacheKeySetInputSignature)."""
        sig: dict[str, str] = {}
        for nid in order:
            node = prompt[nid]
            inputs = {}
            for k, v in sorted((node.get("inputs") or {}).items()):
                if isinstance(v, list) and len(v) == 2 and str(v[0]) in sig:
                    inputs[k] = ["link", sig[str(v[0])], v[1]]
                else:
                    inputs[k] = v
            sig[nid] = hashlib.sha256(
                json.dumps([node["class_type"], inputs], default=str).encode()
            ).hexdigest()
        return sig

    def _write_output(self, node: dict) -> dict:
        """Save the MP4 like folder_paths.get_save_image_path: prefix may hold a subfolder; counter = max + 1.

        ComfyUI rescans the folder on every save; the fake scans once per prefix and counts on
        from there (only the fake writes there), so 10,000-job batches stay fast.
        """
        prefix = str((node.get("inputs") or {}).get("filename_prefix") or "ComfyUI")
        sub, _, base = prefix.replace("\\", "/").rpartition("/")
        folder = self.output_dir / sub
        folder.mkdir(parents=True, exist_ok=True)
        key = (str(folder), base)
        if key not in self._counters:
            pattern = re.compile(re.escape(base) + r"_(\d+)_\.mp4$")
            self._counters[key] = max(
                (int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))), default=0
            )
        self._counters[key] += 1
        name = f"{base}_{self._counters[key]:05}_.mp4"
        (folder / name).write_bytes(tiny_mp4())
        self.outputs_written.append(f"{sub}/{name}" if sub else name)
        ref = {"filename": name, "subfolder": sub, "type": "output"}
        mode = self.output_key
        if mode == "auto":
            mode = "gifs" if node["class_type"] == "VHS_VideoCombine" else "images"
        ui: dict[str, list] = {}
        if mode in ("images", "both"):
            # core SaveVideo: ui.PreviewVideo -> {"images": [...], "animated": (True,)}
            ui["images"] = [dict(ref)]
            ui["animated"] = [True]
        if node["class_type"] == "VideoEncode":
            # our node also shows a one-line summary on itself
            ui["text"] = [f"{ref['subfolder']}/{name}: 8 frames 64x64, with audio"]
        if mode in ("gifs", "both"):
            # VideoHelperSuite VideoCombine: {"gifs": [{..., "format", "frame_rate", "fullpath"}]}
            ui["gifs"] = [dict(ref, format="video/h264-mp4", frame_rate=8.0, fullpath=str(folder / name))]
        return ui


def _err(kind: str, message: str, details: str = "") -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _pick(prompt: dict, order: list[str], class_type: str) -> str | None:
    return next((nid for nid in order if prompt[nid].get("class_type") == class_type), None)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
