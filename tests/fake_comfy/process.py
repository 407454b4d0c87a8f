"""Run the fake ComfyUI in a child process, so a test can kill -9 a host and start it again.

host = FakeComfyProcess(tmp_path / "host1", run_seconds=0.2).start()
... ComfyClient(host.url) ...
host.kill()          # SIGKILL: connections reset, queue and history gone
host.start()         # same port, same input/output folders, empty queue and history
host.executions()    # every prompt_id that ever started executing (survives kills)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .server import EXECUTIONS_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind to 0, read it, release it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FakeComfyProcess:
    """`python -m tests.fake_comfy` as a child process. kwargs map to the CLI flags of __main__.py.

    Options: run_seconds, progress_steps, history_lag, output_key, token, upload_limit_bytes,
    vram_total_gb, vram_free_gb, model_files (list), faults (dict), lax_prompt_id (bool),
    job_times (list of TIER=SPEC), time_scale, seed.
    """

    def __init__(self, root: str | Path, port: int | None = None, **options: Any) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.options = options
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tests.fake_comfy", "--port", str(self.port), "--root", str(self.root)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if key == "faults":
                argv += [flag, json.dumps(value)]
            elif key == "model_files":
                argv += [flag, ",".join(value)]
            elif isinstance(value, (list, tuple)):  # repeatable flags (job_times)
                for item in value:
                    argv += [flag, str(item)]
            elif isinstance(value, bool):
                argv += [flag] if value else []
            elif value is not None:
                argv += [flag, str(value)]
        return argv

    def start(self, timeout: float = 20.0) -> FakeComfyProcess:
        """Spawn and wait until it answers /_fake/state."""
        if self.alive():
            return self
        log = open(self.root / "fake_comfy.log", "ab")
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        )
        self.proc = subprocess.Popen(
            self._argv(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fake ComfyUI exited with {self.proc.returncode}; see {self.root / 'fake_comfy.log'}"
                )
            try:
                self.state()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"fake ComfyUI did not answer within {timeout} s; see {self.root / 'fake_comfy.log'}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a host that loses power or is OOM-killed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> FakeComfyProcess:
        self.kill()
        return self.start()

    def __enter__(self) -> FakeComfyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request(self, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def state(self) -> dict:
        """TEST-ONLY probes of the running process (executions, submissions, uploads, outputs_written, faults)."""
        return self._request("/_fake/state")

    def set_faults(self, **values: Any) -> dict:
        return self._request("/_fake/faults", values)

    def executions(self) -> list[str]:
        """Every prompt_id that started executing on this host, across kills (read from disk)."""
        path = self.root / EXECUTIONS_FILE
        if not path.exists():
            return []
        return [json.loads(line)["prompt_id"] for line in path.read_text().splitlines() if line.strip()]
