"""What can go wrong when a ComfyUI host runs one of our jobs, as plain data.

The scheduler decides what to do with a failed attempt from two attributes only:
`retryable` (try again, after backoff, possibly elsewhere) and `kind` (a short
stable word that is written to the journal and the report). Keeping the policy
in data rather than in scattered `except` clauses (cf. urllib3's `Retry`) lets
the journal record and the report print exactly why an attempt ended.

`classify_execution_error` turns a host's `execution_error` (websocket message
data, or the `status` block of a history entry) into one of these classes by
the exception's class name, which is all a remote client can see of it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "HostError",
    "TransientHostError",
    "HostAuthError",
    "HostOOMError",
    "JobInputError",
    "HostConfigError",
    "ValidationHostError",
    "ExecutionHostError",
    "UploadTooLargeError",
    "JobTimeoutError",
    "classify_execution_error",
    "one_line",
]


def one_line(text: Any, limit: int = 500) -> str:
    """Collapse a (possibly multi-line) host message into one line of bounded length."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# The node pack's error classes, matched by name (the runner never imports the engine).
INPUT_ERROR_NAMES = frozenset({"SonicInputError", "NoFaceInFrames"})  # bad input: never retried
MODEL_ERROR_NAMES = frozenset({"SonicModelError"})  # the host lacks the weights: try another host
OOM_ERROR_NAMES = frozenset({"SonicOutOfMemoryError", "OutOfMemoryError"})
SERVICE_ERROR_NAMES = frozenset({"SonicServiceError"})  # a service the node calls failed: retried
ENGINE_ERROR_NAMES = INPUT_ERROR_NAMES | MODEL_ERROR_NAMES | OOM_ERROR_NAMES | SERVICE_ERROR_NAMES


class HostError(Exception):
    """Base class: one attempt on one host failed. `message` is one line for humans."""

    retryable: bool = True
    default_kind: str = "execution"

    def __init__(self, message: str, kind: str | None = None, details: dict | None = None) -> None:
        self.message = one_line(message)
        self.kind = kind or self.default_kind
        self.details = details or {}
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, message={self.message!r})"


class TransientHostError(HostError):
    """The host or the path to it failed, not the job: retry with backoff.

    kind is one of "connection", "http_5xx", "socket", "restart", "timeout",
    or "interrupted" (someone interrupted the prompt on the host).
    """

    retryable = True
    default_kind = "connection"


class HostAuthError(TransientHostError):
    """The host (its proxy) refused our credentials (HTTP 401/403).

    Retryable because another host may accept the job; the scheduler should treat
    the host as unhealthy, since repeating the same headers there will not help.
    """

    default_kind = "auth"


class HostOOMError(HostError):
    """The host ran out of (GPU) memory: retry at the next lower resolution tier.

    `resolution` / `next_tier` are filled when the host's message names them
    (our SonicOutOfMemoryError says "min_resolution=768 ... min_resolution=512").
    """

    retryable = True
    default_kind = "oom"

    def __init__(self, message: str, kind: str | None = None, details: dict | None = None) -> None:
        super().__init__(message, kind, details)
        tiers = [int(t) for t in re.findall(r"min_resolution=(\d+)", self.message)]
        self.resolution: int | None = tiers[0] if tiers else None
        self.next_tier: int | None = tiers[1] if len(tiers) > 1 else None


class JobInputError(HostError):
    """The job's input is unusable (no face, unreadable audio): never retried."""

    retryable = False
    default_kind = "input"


class HostConfigError(HostError):
    """The host cannot run this workflow at all (our SonicModelError: weight files missing or wrong).

    Neither the job's fault nor worth repeating on that host: the batch stops sending this
    workflow's jobs there and runs the job on another host, without counting the attempt
    against the job's budget; only when no host is left is the job dead.
    """

    retryable = True
    default_kind = "host_config"


class ValidationHostError(HostError):
    """ComfyUI refused the graph (HTTP 400 from /prompt): never retried."""

    retryable = False
    default_kind = "validation"


class ExecutionHostError(HostError):
    """An unexpected exception on the host: retried, bounded by the attempt limit."""

    retryable = True
    default_kind = "execution"


class UploadTooLargeError(HostError):
    """The host's upload limit refused a file (HTTP 413): never retried as is."""

    retryable = False
    default_kind = "upload_too_large"


class JobTimeoutError(HostError):
    """The job did not finish within its per-job timeout."""

    retryable = True
    default_kind = "timeout"


# torch.OutOfMemoryError, torch.cuda.OutOfMemoryError, our SonicOutOfMemoryError; and any
# exception whose message says so (e.g. "RuntimeError: CUDA error: out of memory").
_OOM_TYPE_MARKER = "OutOfMemory"
_OOM_MESSAGE_MARKER = "out of memory"
# The class name at the end of an exception_type. ComfyUI sends "module.QualName", and for a
# custom node the module is derived from its folder path, e.g.
# "/tmp/comfy/custom_nodes/ComfyUI-Sonic.nodes.engine.errors.SonicModelError"; older hosts or
# repr()-style strings may add "<class '...'>" around it.
_TYPE_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\W*$")


def exception_class_name(exception_type: str) -> str:
    """The bare class name of a host's exception_type, whatever module path comes before it."""
    match = _TYPE_NAME.search(exception_type or "")
    return match.group(1) if match else ""


def _error_data(msg: dict) -> dict:
    """Find the execution_error data in a websocket message or a history status block."""
    if not isinstance(msg, dict):
        return {"exception_message": one_line(msg)}
    if "data" in msg and isinstance(msg.get("data"), dict) and msg.get("type"):
        return msg["data"]
    if "messages" in msg:  # history entry "status": {"status_str", "completed", "messages": [[type, data]]}
        for item in msg.get("messages") or []:
            if isinstance(item, (list, tuple)) and len(item) == 2 and item[0] == "execution_error":
                return item[1] if isinstance(item[1], dict) else {}
        for item in msg.get("messages") or []:
            if isinstance(item, (list, tuple)) and len(item) == 2 and item[0] == "execution_interrupted":
                return {"exception_type": "execution_interrupted", **(item[1] or {})}
        return {
            "exception_message": f"host reported status {msg.get('status_str', 'error')!r} without details"
        }
    return msg


def classify_execution_error(msg: dict) -> HostError:
    """Map a host's execution_error (or history status) to the HostError that says what to do next."""
    data = _error_data(msg)
    exc_type = str(data.get("exception_type") or "")
    exc_message = one_line(data.get("exception_message") or "")
    node = data.get("node_type") or ""
    node_id = data.get("node_id")
    where = f" in {node} (node {node_id})" if node else ""
    short_type = exception_class_name(exc_type) or "error"
    text = (
        f"host error{where}: {short_type}: {exc_message}"
        if exc_message
        else f"host error{where}: {short_type}"
    )
    details = {
        k: data.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message") if k in data
    }
    if exc_type == "execution_interrupted":
        return TransientHostError(
            f"prompt was interrupted on the host{where}", kind="interrupted", details=details
        )
    if short_type in INPUT_ERROR_NAMES:
        return JobInputError(text, details=details)
    if short_type in MODEL_ERROR_NAMES:
        return HostConfigError(text, details=details)
    if _OOM_TYPE_MARKER in short_type or _OOM_MESSAGE_MARKER in exc_message.lower():
        return HostOOMError(text, details=details)
    return ExecutionHostError(text, details=details)
