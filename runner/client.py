"""ComfyUI HTTP + websocket client for one host: what the runner needs, and what goes wrong.

ComfyUI's own example client (script_examples/websockets_api_example.py) submits
a prompt and reads the websocket until `executing` with node None. On a fleet
that is not enough (DESIGN.md section 6), so this client also:
- sends per-host headers (auth proxies) and honours https `verify` on every call;
- reuses identical uploads (sha256 per client; ComfyUI itself reuses a name for
  identical bytes and renames "name (1).ext" for different ones), and forgets them
  when the host may have lost its input folder: it was unreachable and answers
  again (restarted?), it no longer knows a prompt, or it refuses a graph because a
  LoadImage/LoadAudio file is missing;
- treats the websocket as a hint, not the truth: history is polled when the
  socket is silent, a dropped socket is reconnected (messages sent meanwhile
  are lost, so the host is asked where the prompt is), history is re-read for a
  while after the end signal (it can lag execution_success), and a host that
  no longer knows the prompt (it restarted) is reported as such;
- maps every failure to a `HostError` with `retryable`/`kind` (host_errors.py).

requests and websocket-client are imported lazily so `sonic-runner --help`
stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .host_errors import (
    ExecutionHostError,
    HostAuthError,
    JobTimeoutError,
    TransientHostError,
    UploadTooLargeError,
    ValidationHostError,
    classify_execution_error,
    one_line,
)
from .lru import DEFAULT_SIZE, LruCache

__all__ = ["ComfyClient", "names_missing_upload", "safe_url"]

DEFAULT_UPLOAD_LIMIT = 100 * 1024 * 1024  # ComfyUI --max-upload-size default (MB -> bytes)
_CHUNK = 1 << 20


def safe_url(url: str) -> str:
    """The URL without user:password@ (the only form that may appear in messages)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in words an operator can act on (requests nests the OS error)."""
    text = str(exc)
    if any(
        marker in text
        for marker in (
            "NameResolutionError",
            "Name or service not known",
            "nodename nor servname",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
            "No address associated",
        )
    ):
        return "the host name does not resolve"
    if "Connection refused" in text or "ConnectionRefused" in text or "actively refused" in text:
        return "connection refused: nothing listens on that port"
    return type(exc).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _validation_message(body: Any) -> str:
    """One line from ComfyUI's 400 body: {error: {type, message, details}, node_errors: {id: {errors, class_type}}}."""
    if not isinstance(body, dict):
        return one_line(body) or "host refused the workflow (HTTP 400)"
    error = body.get("error")
    if isinstance(error, dict):
        head = error.get("message") or error.get("type") or "invalid prompt"
        if error.get("details"):
            head = f"{head}: {error['details']}"
    else:
        head = str(error or "invalid prompt")
    parts = []
    for node_id, node in (body.get("node_errors") or {}).items():
        if not isinstance(node, dict):
            continue
        for err in node.get("errors") or []:
            detail = err.get("details") or err.get("message") or err.get("type")
            parts.append(f"{node.get('class_type', '?')} (node {node_id}): {detail}")
    text = head + ("; " + "; ".join(parts) if parts else "")
    return one_line(f"host refused the workflow: {text}")


#: Loader nodes whose file input names an upload in the host's input folder.
_UPLOAD_INPUTS = {"LoadImage": "image", "LoadAudio": "audio", "LoadImageMask": "image"}
_FILE_ERRORS = {"custom_validation_failed", "value_not_in_list"}


def names_missing_upload(details: Any) -> bool:
    """True when a 400 body from /prompt says a LoadImage/LoadAudio file is not on the host.

    ComfyUI validates those inputs against its input folder (the nodes' VALIDATE_INPUTS:
    "Invalid image file: NAME", type custom_validation_failed; or value_not_in_list for the
    file combo). A host restarted on fresh storage answers so for a file we uploaded
    before: the upload must be sent again, the graph itself is fine.
    """
    if not isinstance(details, dict):
        return False
    for node in (details.get("node_errors") or {}).values():
        if not isinstance(node, dict) or node.get("class_type") not in _UPLOAD_INPUTS:
            continue
        wanted = _UPLOAD_INPUTS[node["class_type"]]
        for err in node.get("errors") or []:
            if not isinstance(err, dict) or err.get("type") not in _FILE_ERRORS:
                continue
            name = (err.get("extra_info") or {}).get("input_name")
            if name == wanted or str(err.get("details") or "").startswith(wanted):
                return True
    return False


def _walk_file_refs(value: Any) -> Iterator[dict]:
    """Every {"filename", "subfolder"?, "type"?} dict anywhere inside a node's ui output."""
    if isinstance(value, dict):
        if isinstance(value.get("filename"), str):
            yield value
            return
        for item in value.values():
            yield from _walk_file_refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk_file_refs(item)


class ComfyClient:
    """One ComfyUI host. Thread-safe enough to share between the runner's worker threads.

    Every concurrent `wait()` must use its own client_id (and submit with that same
    id): ComfyUI keeps one socket per client_id, and a second connection with the
    same id silently takes the first one's messages.
    """

    #: how long the host may stay unreachable during wait() before TransientHostError("connection")
    host_down_grace: float = 10.0
    #: how long to keep re-reading history after the end signal (it can lag execution_success)
    history_grace: float = 5.0

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        cache_entries: int = DEFAULT_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.safe_url = safe_url(self.base_url)
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.verify = verify
        self._session: Any = None
        # Bounded: a fleet worker's inputs are new temp files every job (runner/lru.py).
        # (sha256, subfolder) -> the graph value of the upload; (path, size, mtime_ns) -> sha256
        self._uploads: LruCache[tuple[str, str], str] = LruCache(cache_entries)
        self._digests: LruCache[tuple[str, int, int], str] = LruCache(cache_entries)
        self._unreachable = False  # a call failed to connect; the next answer may come from a restart
        self._sockets: dict[str, Any] = {}  # opened by connect(), taken over by wait()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ComfyClient({self.safe_url!r})"

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets.values()), {}
        for ws in sockets:
            with contextlib.suppress(Exception):
                ws.close()
        if self._session is not None:
            self._session.close()
            self._session = None

    # ------------------------------------------------------------------ HTTP plumbing

    def _http(self) -> Any:
        with self._lock:
            if self._session is None:
                import requests

                session = requests.Session()
                session.headers.update(self.headers)
                session.verify = self.verify
                self._session = session
            return self._session

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """One HTTP call; connection problems, 5xx, 401/403 and 413 become HostErrors."""
        import requests

        url = self.base_url + path
        limit = timeout if timeout is not None else self.timeout
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a Session's verify
            response = self._http().request(
                method, url, timeout=(min(10.0, limit), limit), verify=self.verify, **kwargs
            )
        except requests.ConnectTimeout as exc:
            self._unreachable = True
            raise TransientHostError(
                f"{self.safe_url}{path}: cannot connect: no answer within {min(10.0, limit):g} s "
                "(the address may be wrong or a firewall drops the packets)",
                kind="connection",
            ) from exc
        except requests.Timeout as exc:
            raise TransientHostError(
                f"{self.safe_url}{path}: no answer within {limit:g} s", kind="timeout"
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise TransientHostError(
                f"{self.safe_url}{path}: TLS certificate not accepted; give this host's CA bundle "
                "(verify=PATH) or verify=False",
                kind="connection",
            ) from exc
        except requests.RequestException as exc:
            self._unreachable = True
            raise TransientHostError(
                f"{self.safe_url}{path}: cannot connect ({_connect_reason(exc)})", kind="connection"
            ) from exc
        self._answered()
        code = response.status_code
        if code >= 500:
            raise TransientHostError(
                f"{self.safe_url}{path}: HTTP {code} {one_line(response.text, 200)}", kind="http_5xx"
            )
        if code in (401, 403):
            raise HostAuthError(
                f"{self.safe_url}{path}: HTTP {code}: the host (or its proxy) refused our credentials; "
                "check this host's headers/token"
            )
        if code == 413:
            raise UploadTooLargeError(
                f"{self.safe_url}{path}: HTTP 413: the file is larger than the host's upload limit "
                "(ComfyUI --max-upload-size, default 100 MB)"
            )
        return response

    def _answered(self) -> None:
        """The host answers: if it could not be reached before, it may have restarted since."""
        if self._unreachable:
            self._unreachable = False
            self.forget_uploads()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise TransientHostError(f"{self.safe_url}{path}: HTTP {response.status_code}", kind="http_5xx")
        try:
            return response.json()
        except ValueError as exc:
            raise TransientHostError(f"{self.safe_url}{path}: answer is not JSON", kind="http_5xx") from exc

    # ------------------------------------------------------------------ info

    def system_stats(self) -> dict:
        """GET /system_stats: {"system": {"comfyui_version", ...}, "devices": [{"vram_total", "vram_free", ...}]}."""
        return self._json("GET", "/system_stats")

    def object_info(self) -> dict:
        """GET /object_info: every node class the host can run, with its input schema."""
        return self._json("GET", "/object_info")

    # ------------------------------------------------------------------ upload / submit

    def upload(self, path: Path, subfolder: str = "sonic") -> str:
        """Upload an input file (image or audio) and return the value a LoadImage/LoadAudio input needs.

        Identical bytes are uploaded once per client (and ComfyUI itself reuses the
        name for identical bytes), so a batch that reuses one portrait sends it once.
        """
        path = Path(path)
        try:
            st = path.stat()
            size = st.st_size
            version = (str(path), size, st.st_mtime_ns)
            digest = self._digests.get(version)
            if digest is None:  # hashed once per file version: a portrait shared by 1,000 rows
                digest = _sha256(path)
                self._digests[version] = digest
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the file to upload ({exc.strerror or exc})") from exc
        key = (digest, subfolder)
        cached = self._uploads.get(key)
        if cached is not None:
            return cached
        try:
            with open(path, "rb") as fh:
                response = self._request(
                    "POST",
                    "/upload/image",
                    files={"image": (path.name, fh, "application/octet-stream")},
                    data={"type": "input", "subfolder": subfolder, "overwrite": "false"},
                )
        except TransientHostError as exc:
            # aiohttp may reset the connection while a too-large body is still being sent,
            # so the 413 never arrives; above ComfyUI's default limit that is the likely cause.
            if exc.kind == "connection" and size > DEFAULT_UPLOAD_LIMIT:
                raise UploadTooLargeError(
                    f"{self.safe_url}/upload/image: connection closed while sending {path.name} "
                    f"({size / 2**20:.0f} MB, above ComfyUI's default 100 MB upload limit)"
                ) from exc
            raise
        if response.status_code != 200:
            raise TransientHostError(
                f"{self.safe_url}/upload/image: HTTP {response.status_code} for {path.name}", kind="http_5xx"
            )
        body = response.json()
        name, sub = body["name"], body.get("subfolder") or ""
        value = f"{sub}/{name}" if sub else name
        self._uploads[key] = value
        return value

    def forget_uploads(self) -> None:
        """Drop the upload cache: the host may have lost its input folder (restart on fresh storage).

        Called by the client itself when the host answers after being unreachable, when it
        no longer knows a prompt, and on a 400 naming a missing LoadImage/LoadAudio file.
        """
        self._uploads.clear()

    def submit(self, prompt: dict, prompt_id: str, client_id: str, front: bool = False) -> dict:
        """POST /prompt with our own prompt_id (use a UUID: newer ComfyUI rejects anything else).

        A connection error here is ambiguous (the prompt may be queued even though the
        answer was lost): ask prompt_status() before submitting again.
        Returns the host's answer {prompt_id, number, node_errors}.
        """
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        if front:
            body["front"] = True
        response = self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                detail = response.json()
            except ValueError:
                detail = response.text
            if names_missing_upload(detail):
                self.forget_uploads()  # the host lost the files: the next upload() sends them again
            raise ValidationHostError(
                _validation_message(detail), details=detail if isinstance(detail, dict) else {}
            )
        if response.status_code != 200:
            raise TransientHostError(f"{self.safe_url}/prompt: HTTP {response.status_code}", kind="http_5xx")
        return response.json()

    # ------------------------------------------------------------------ state

    def history(self, prompt_id: str) -> dict | None:
        """The finished prompt's history entry, or None (ComfyUI answers {} until it has finished)."""
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry or None

    def queue(self) -> dict:
        """GET /queue: {"queue_running": [[number, prompt_id, ...]], "queue_pending": [...]}."""
        return self._json("GET", "/queue")

    def prompt_status(self, prompt_id: str) -> str:
        """ "done" | "running" | "pending" | "unknown" (never heard of it, or the host restarted).

        History is read again after the queue: ComfyUI moves a prompt from the queue to
        history atomically, so this order cannot miss one that finishes in between.
        """
        if self.history(prompt_id) is not None:
            return "done"
        queue = self.queue()
        if any(len(item) > 1 and item[1] == prompt_id for item in queue.get("queue_running") or []):
            return "running"
        if any(len(item) > 1 and item[1] == prompt_id for item in queue.get("queue_pending") or []):
            return "pending"
        if self.history(prompt_id) is not None:
            return "done"
        return "unknown"

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt the prompt if it is the one running (ComfyUI ignores other ids)."""
        self._json_ok("POST", "/interrupt", json={"prompt_id": prompt_id})

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove prompts that have not started yet from the host's queue."""
        self._json_ok("POST", "/queue", json={"delete": list(prompt_ids)})

    def delete_history(self, prompt_ids: list[str]) -> None:
        """Drop finished prompts from the host's history (ComfyUI keeps up to 10,000 in memory)."""
        self._json_ok("POST", "/history", json={"delete": list(prompt_ids)})

    def _json_ok(self, method: str, path: str, **kwargs: Any) -> None:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise TransientHostError(f"{self.safe_url}{path}: HTTP {response.status_code}", kind="http_5xx")

    # ------------------------------------------------------------------ waiting

    def _ws_url(self, client_id: str) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((scheme, netloc, parts.path + "/ws", f"clientId={quote(client_id, safe='')}", ""))

    def _connect_ws(self, client_id: str, timeout: float) -> Any:
        import ssl

        import websocket

        sslopt: dict[str, Any] = {}
        if self.verify is False:
            sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        elif isinstance(self.verify, str):
            sslopt = {"ca_certs": self.verify}
        header = [f"{k}: {v}" for k, v in self.headers.items()]
        parts = urlsplit(self.base_url)
        if parts.username is not None:  # userinfo in the URL: requests sends it as basic auth, do the same
            import base64

            token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
            if not any(h.lower().startswith("authorization:") for h in header):
                header.append(f"Authorization: Basic {token}")
        try:
            return websocket.create_connection(
                self._ws_url(client_id),
                header=header,
                timeout=timeout,
                sslopt=sslopt,
                enable_multithread=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            code = getattr(exc, "status_code", 0) or 0
            if code in (401, 403):
                raise HostAuthError(f"{self.safe_url}/ws: HTTP {code}: credentials refused") from exc
            raise TransientHostError(
                f"{self.safe_url}/ws: HTTP {code} on websocket upgrade", kind="socket"
            ) from exc
        except (OSError, websocket.WebSocketException) as exc:
            self._unreachable = True
            raise TransientHostError(
                f"{self.safe_url}/ws: cannot connect ({type(exc).__name__})", kind="connection"
            ) from exc

    def connect(self, client_id: str) -> None:
        """Open the websocket for client_id BEFORE submit, so wait() also sees the first messages.

        Optional: without it wait() connects itself and asks the host for anything it missed.
        """
        ws = self._connect_ws(client_id, self.timeout)
        with self._lock:
            old = self._sockets.pop(client_id, None)
            self._sockets[client_id] = ws
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()

    def _result(self, entry: dict) -> dict:
        """A finished history entry: return it, or raise what its status says went wrong."""
        status = entry.get("status") or {}
        if status.get("status_str") == "error" or (status and status.get("completed") is False):
            raise classify_execution_error(status)
        return entry

    def _where_is(self, prompt_id: str) -> dict | None:
        """Backstop: the finished entry, None while queued/running; raise if the host forgot the prompt."""
        entry = self.history(prompt_id)
        if entry is not None:
            return entry
        status = self.prompt_status(prompt_id)
        if status == "done":
            return self.history(prompt_id)
        if status == "unknown":
            self.forget_uploads()  # a host that lost its queue may have lost its input folder too
            raise TransientHostError(
                f"{self.safe_url}: host no longer knows prompt {prompt_id} (restarted? queue and history "
                "live in memory only)",
                kind="restart",
            )
        return None

    def _history_after_end(self, prompt_id: str, deadline: float) -> dict | None:
        """After the end signal history may still be {} for a moment: re-read it briefly."""
        pause = 0.02
        stop = min(deadline, time.monotonic() + self.history_grace)
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() >= stop:
                return self._where_is(prompt_id)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def wait(
        self,
        prompt_id: str,
        client_id: str,
        timeout: float,
        on_event: Callable[[dict], None] | None = None,
        poll_interval: float = 2.0,
    ) -> dict:
        """Follow the prompt to its end and return its history entry (with "outputs" and "status").

        Raises classify_execution_error(...) for a failed prompt, TransientHostError for an
        interrupted prompt ("interrupted"), a host that forgot it ("restart") or stayed
        unreachable longer than host_down_grace ("connection"), JobTimeoutError on timeout.
        """
        import websocket

        deadline = time.monotonic() + timeout
        with self._lock:
            ws = self._sockets.pop(client_id, None)
        down_since: float | None = None
        drops = 0  # consecutive socket losses without news in between
        last_news = time.monotonic()  # last time we learnt something about our prompt

        def emit(kind: str, data: Any) -> None:
            if on_event is not None:
                with contextlib.suppress(Exception):  # a display sink must never break the job
                    on_event({"type": kind, "data": data})

        def host_trouble(exc: TransientHostError) -> None:
            nonlocal down_since
            if isinstance(exc, HostAuthError):
                raise exc
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > self.host_down_grace:
                raise TransientHostError(
                    f"{self.safe_url}: host unreachable for {now - down_since:.0f} s while running prompt "
                    f"{prompt_id} ({exc.message})",
                    kind=exc.kind,
                ) from exc

        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeoutError(
                        f"prompt {prompt_id} did not finish within {timeout:g} s on {self.safe_url}"
                    )
                if ws is None:
                    if drops:  # a socket that keeps dropping must not turn into a busy loop
                        time.sleep(max(0.0, min(0.05 * 2 ** min(drops, 5), deadline - time.monotonic())))
                    try:
                        ws = self._connect_ws(client_id, min(self.timeout, max(remaining, 0.5)))
                    except TransientHostError as exc:
                        host_trouble(exc)
                    # Messages sent while we were not connected are lost: ask where the prompt is.
                    try:
                        entry = self._where_is(prompt_id)
                        down_since = None
                        last_news = time.monotonic()
                        if entry is not None:
                            return self._result(entry)
                    except TransientHostError as exc:
                        if exc.kind == "restart":
                            raise
                        host_trouble(exc)
                    if ws is None:  # websocket unusable (host down, or a proxy without websockets): poll
                        time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))
                        continue
                if time.monotonic() - last_news >= poll_interval:
                    try:
                        entry = self._where_is(prompt_id)
                        down_since = None
                        if entry is not None:
                            return self._result(entry)
                    except TransientHostError as exc:
                        if exc.kind == "restart":
                            raise
                        host_trouble(exc)
                    last_news = time.monotonic()
                try:
                    ws.settimeout(max(0.05, min(poll_interval, deadline - time.monotonic())))
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue  # silent socket: the poll above runs on the next turn
                except (websocket.WebSocketException, OSError):
                    with contextlib.suppress(Exception):
                        ws.close()
                    ws = None
                    drops += 1
                    continue
                if isinstance(raw, (bytes, bytearray)):
                    continue  # binary preview frames
                if not raw:
                    if not ws.connected:
                        ws = None
                        drops += 1
                    continue
                try:
                    msg = json.loads(raw)
                    kind, data = msg.get("type"), msg.get("data") or {}
                except (ValueError, AttributeError):
                    continue
                if not isinstance(data, dict):
                    continue
                owner = data.get("prompt_id")
                if owner is not None and owner != prompt_id:
                    continue
                emit(kind, data)
                if owner is None:
                    continue  # status broadcasts, or the reconnect `executing` that carries no prompt_id
                last_news = time.monotonic()
                drops = 0
                if kind == "execution_error":
                    raise classify_execution_error(data)
                if kind == "execution_interrupted":
                    raise classify_execution_error({"status_str": "error", "messages": [[kind, data]]})
                if kind == "executing" and data.get("node") is None:
                    entry = self._history_after_end(prompt_id, deadline)
                    if entry is not None:
                        return self._result(entry)
        finally:
            if ws is not None:
                with contextlib.suppress(Exception):
                    ws.close()

    # ------------------------------------------------------------------ results

    def output_files(self, history_entry: dict) -> list[dict]:
        """Every file the prompt's nodes reported, under any ui key ("images", "gifs", "videos", ...).

        Each item: {"filename", "subfolder", "type", "node_id", "key"}; a file reported twice
        (e.g. under "images" and "gifs") is listed once.
        """
        files: list[dict] = []
        seen: set[tuple[str, str, str]] = set()
        for node_id, ui in (history_entry.get("outputs") or {}).items():
            if not isinstance(ui, dict):
                continue
            for key, value in ui.items():
                for ref in _walk_file_refs(value):
                    item = {
                        "filename": ref["filename"],
                        "subfolder": ref.get("subfolder") or "",
                        "type": ref.get("type") or "output",
                        "node_id": node_id,
                        "key": key,
                    }
                    ident = (item["filename"], item["subfolder"], item["type"])
                    if ident not in seen:
                        seen.add(ident)
                        files.append(item)
        return files

    def download(self, file_ref: dict, dest: Path) -> Path:
        """GET /view streamed to dest.part, checked (complete, non-empty), then renamed to dest.

        This machine's disk failing (full, read-only) raises ``LocalDiskError``: neither the
        job's fault nor the host's, so no attempt of the job is spent on it (a batch stops,
        resumable; a fleet worker hands the job back and stops taking jobs).
        """
        dest = Path(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _disk_error(dest, exc) from exc
        # Unique per process and thread: two workers fetching one job never write one file.
        part = dest.with_name(f"{dest.name}.{os.getpid()}-{threading.get_ident()}.part")
        params = {
            "filename": file_ref["filename"],
            "subfolder": file_ref.get("subfolder") or "",
            "type": file_ref.get("type") or "output",
        }
        label = f"{params['subfolder']}/{params['filename']}".lstrip("/")
        response = self._request("GET", "/view", params=params, stream=True)
        try:
            if response.status_code != 200:
                raise TransientHostError(
                    f"{self.safe_url}/view: HTTP {response.status_code} for {label}",
                    kind="http_5xx" if response.status_code >= 500 else "connection",
                )
            written = 0
            try:
                with open(part, "wb") as fh:
                    for block in response.iter_content(_CHUNK):
                        fh.write(block)
                        written += len(block)
            except Exception as exc:
                import requests

                if isinstance(exc, requests.RequestException):
                    raise TransientHostError(
                        f"{self.safe_url}/view: download of {label} broke off ({type(exc).__name__})",
                        kind="connection",
                    ) from exc
                if isinstance(exc, OSError):
                    raise _disk_error(dest, exc) from exc
                raise
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) != written:
                raise TransientHostError(
                    f"{self.safe_url}/view: {label} truncated ({written} of {expected} bytes)",
                    kind="connection",
                )
            if written == 0:
                raise ExecutionHostError(f"{self.safe_url}/view: {label} is empty")
            os.replace(part, dest)
            return dest
        finally:
            response.close()
            with contextlib.suppress(FileNotFoundError):
                part.unlink()


class LocalDiskError(OSError):
    """This machine could not write a download (its disk is full or read-only)."""


def _disk_error(dest: Path, exc: OSError) -> LocalDiskError:
    return LocalDiskError(
        f"cannot write {dest.name} to {dest.parent} on this machine ({exc.strerror or exc})"
    )
