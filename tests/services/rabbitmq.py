"""A private RabbitMQ node for tests: its own node name, ports, data and log folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._common import free_port, remove, service_dir, unavailable

_BIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class RabbitServer:
    root: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(_BIN / "rabbitmqctl"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [str(_BIN / "rabbitmq-server")], env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ctl("-q", "await_startup", "--timeout", "2", timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        tail = (self.root / "server.log").read_text(errors="replace")[-800:]
        self.kill()
        unavailable(f"RabbitMQ did not start on port {self.port}: {tail}")

    def kill(self) -> None:
        """Stop the node at once (what a crash or a restart of the broker host looks like)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.ctl("-q", "stop", timeout=60)
            self.kill()
        subprocess.run(
            ["epmd", "-port", self.env["ERL_EPMD_PORT"], "-kill"],
            capture_output=True,
            env=self.env,
            timeout=30,
        )
        remove(self.root)


def start_rabbitmq(consumer_timeout_ms: int = 2 * 3600 * 1000) -> RabbitServer:
    """Start a node; fails in CI (skips elsewhere) when RabbitMQ is not installed or won't start."""
    if not (_BIN / "rabbitmq-server").exists() or shutil.which("epmd") is None:
        unavailable("RabbitMQ is not installed (Debian package rabbitmq-server)")
    root = service_dir("sonic-rmq-", None)
    port = free_port()
    (root / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\nconsumer_timeout = {consumer_timeout_ms}\n"
    )
    (root / "plugins").write_text("[].\n")
    env = {
        **os.environ,
        "HOME": str(root),  # the Erlang cookie lives here
        "RABBITMQ_NODENAME": f"sonic{port}@localhost",
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "plugins"),
        "RABBITMQ_PID_FILE": str(root / "pid"),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "ERL_EPMD_PORT": str(free_port()),
    }
    server = RabbitServer(root, port, env)
    server.start()
    return server
