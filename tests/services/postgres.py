"""A private PostgreSQL server for tests: initdb in a temp folder, loopback, a free port."""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._common import as_user, free_port, remove, run, service_dir, unavailable


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    owner: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://sonic@127.0.0.1:{self.port}/sonic"

    def pg_ctl(self, *args: str) -> None:
        run(as_user(self.owner, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args]))

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "fast", "-w")
        except subprocess.SubprocessError:
            pass
        remove(self.root)


def start_postgres() -> PostgresServer:
    """Start one; fails in CI (skips elsewhere) when PostgreSQL is not installed or won't start."""
    bindir = _bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed (Debian package postgresql)")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
            owner = "postgres"
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run the server as")
    root = service_dir("sonic-pg-", owner)
    server = PostgresServer(bindir, root, free_port(), owner)
    try:
        run(as_user(owner, [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "sonic", "-A", "trust"]))
        options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        server.pg_ctl("-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
        run(
            as_user(
                owner,
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "sonic", "sonic"],
            )
        )
    except subprocess.SubprocessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        server.stop()
        unavailable(f"PostgreSQL did not start: {getattr(exc, 'stderr', '') or exc} {log[-500:]}")
    return server
