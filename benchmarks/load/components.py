"""The processes of the local stack, each one a named component the monitor and faults can find.

Servers come from tests/services/ (the same private PostgreSQL, RabbitMQ and SeaweedFS the
integration tests start); ours (serve replicas, workers, fake ComfyUI hosts) are plain child
processes with their logs under the run's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A part of the stack that would not start; the message says which and why."""


def start_service(start, what: str):
    """Call a tests/services starter; its pytest skip/fail (a missing package) becomes one StackError."""
    try:
        return start()
    except BaseException as exc:  # noqa: BLE001 - pytest's Skipped/Failed are BaseExceptions
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = str(getattr(exc, "msg", "") or exc).strip()
        raise StackError(f"{what} did not start: {message}") from None


@dataclass
class Proc:
    """One child process we start (and may kill and start again, for fault injection)."""

    name: str  # e.g. api-1, worker-2, host-3
    kind: str  # api | worker | host
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_url: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0

    def start(self, timeout: float = 60.0) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if self.cwd is not None:
            self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, start_new_session=True
            )
        self.starts += 1
        if self.ready_url:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-600:]
                raise StackError(f"{self.name} exited with {self.process.returncode}: {tail}")
            try:
                urllib.request.urlopen(self.ready_url, timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise StackError(
            f"{self.name} did not answer {self.ready_url} within {timeout:.0f} s; see {self.log}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group: a crash, nothing cleaned up."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def pids(self) -> list[int]:
        return [self.process.pid] if self.alive() else []


def runner_argv(*args: str) -> list[str]:
    """``sonic-runner ARGS`` with this interpreter's installation (the checkout's .venv)."""
    beside = Path(sys.executable).with_name("sonic-runner")
    if beside.exists():
        return [str(beside), *args]
    return [sys.executable, "-m", "comfyui_sonic.runner", *args]


def tree(pids: list[int]) -> list[psutil.Process]:
    """The processes and all their children (a server's workers, RabbitMQ's Erlang VM)."""
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out.append(proc)
            out.extend(proc.children(recursive=True))
        except psutil.Error:
            continue
    return out


def own_children() -> set[int]:
    """The pids of this process's children now (what :func:`stop_children_since` leaves alone)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def stop_children_since(before: set[int], timeout: float = 10.0) -> list[str]:
    """Stop every child started after ``before`` that is still running; returns what they were.

    The stack stops what it knows about; this catches what it could not know: a signal that
    lands while ``Popen`` is starting a child unwinds before the pid is returned, and that child
    (Locust, a replica) would otherwise run on after the stack has gone.
    """
    left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
    names = []
    for child in left:
        try:
            names.append(" ".join([child.name(), *child.cmdline()[1:3]]))  # python -m locust
            child.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(left, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            continue
    return names


def postgres_pids(server) -> list[int]:
    pidfile = Path(server.root) / "data" / "postmaster.pid"
    try:
        return [int(pidfile.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


def popen_pids(server) -> list[int]:
    process = getattr(server, "process", None)
    return [process.pid] if process is not None and process.poll() is None else []
