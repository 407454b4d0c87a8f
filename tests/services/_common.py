"""Helpers shared by the service fixtures: free ports, service users, the CI rule."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(what: str) -> None:
    """Fail in CI, skip (with the fix) elsewhere: a missing server is never a silent pass."""
    message = f"{what}; install the servers with: sudo scripts/install_services.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def service_dir(prefix: str, owner: str | None) -> Path:
    """A fresh folder the service's user can write (servers refuse to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def as_user(owner: str | None, argv: list[str]) -> list[str]:
    """Run ``argv`` as ``owner`` when we are root (PostgreSQL will not start as root)."""
    if owner is None or os.geteuid() != 0:
        return argv
    return ["runuser", "-u", owner, "--", *argv]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kwargs)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
