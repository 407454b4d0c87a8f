"""Debian's nginx in front of the serve replicas, with the shipped example configuration.

deploy/nginx/sonic-runner.conf is what a user puts in /etc/nginx/conf.d/; the load test runs
that same file, with the lines marked ``# load-test:`` filled in (replica addresses, listen
port, rate, burst), inside a minimal nginx.conf of its own folder (no system paths touched).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "nginx" / "sonic-runner.conf"
_MAIN = """\
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/sonic-runner.conf;
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def render(example: str, port: int, replicas: list[str], rate: int, burst: int) -> str:
    """The example with the load test's values on its ``# load-test:`` lines."""
    out = []
    servers_done = False
    for line in example.splitlines():
        marker = line.partition("# load-test:")[2].strip()
        if marker == "replicas":
            if not servers_done:
                indent = line[: len(line) - len(line.lstrip())]
                out += [f"{indent}server {r} max_fails=3 fail_timeout=10s;" for r in replicas]
                servers_done = True
            continue
        if marker == "listen":
            line = re.sub(r"listen \S+;", f"listen 127.0.0.1:{port};", line)
        elif marker == "rate":
            line = re.sub(r"rate=\d+r/s", f"rate={rate}r/s", line)
        elif marker == "burst":
            line = re.sub(r"burst=\d+", f"burst={burst}", line)
        out.append(line)
    return "\n".join(out) + "\n"


class Nginx:
    """One nginx master (+1 worker) serving ``port``; stop() ends it."""

    def __init__(
        self, root: Path, port: int, replicas: list[str], rate: int = 1000, burst: int = 2000
    ) -> None:
        self.root, self.port = root, port
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / sub).mkdir(exist_ok=True)
        (root / "sonic-runner.conf").write_text(render(EXAMPLE.read_text(), port, replicas, rate, burst))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(_MAIN.format(root=root, user=user))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError(
                "nginx is not installed (Debian package nginx-light or nginx): sudo scripts/install_services.sh"
            )
        conf = str(self.root / "nginx.conf")
        check = subprocess.run(
            [binary, "-t", "-c", conf, "-p", str(self.root)], capture_output=True, text=True
        )
        if check.returncode:
            raise RuntimeError(f"nginx refused its configuration: {check.stderr.strip().splitlines()[-1]}")
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - lives as long as nginx
        self.process = subprocess.Popen([binary, "-c", conf, "-p", str(self.root)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2)
                return self
            except OSError as exc:
                if getattr(exc, "code", None):  # nginx answers (a replica may still be starting)
                    return self
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        tail = (
            (self.root / "error.log").read_text(errors="replace")[-500:]
            if (self.root / "error.log").exists()
            else ""
        )
        self.stop()
        raise RuntimeError(f"nginx did not start on port {self.port}: {tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
