"""Sampling the stack while it runs: CPU, memory and fds of every component, queue depth, host use.

Every ``interval`` seconds (psutil for processes, the job store for queue depth, the broker's
queues in fleet mode, the fake hosts' busy-time counters for utilisation) into CSV files of
the run's folder, which the report reads:

    resources.csv  t, name, kind, rss_mb, cpu_pct, fds, procs
    queue.csv      t, queued, active, done, dead, broker_ready, loadavg (the machine's 1-minute load)
    util.csv       t, name, busy      (busy: share of the interval the host or worker was rendering)
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from .components import tree

ACTIVE = ("uploading", "submitted", "running", "fetching")


class Monitor:
    def __init__(
        self,
        out: Path,
        components: Callable[[], list[tuple[str, str, list[int]]]],
        db_url: str,
        hosts: list[tuple[str, str]] | None = None,
        renderers: int = 0,
        broker: tuple[str, list[str]] | None = None,
        interval: float = 2.0,
        storage: tuple[object, str] | None = None,
        storage_every_s: float = 30.0,
    ) -> None:
        """components() -> [(name, kind, pids)], called each sample (restarted processes move).

        hosts: [(name, url)] of fake ComfyUI hosts (utilisation from their busy time);
        renderers: embedded mode, the number of in-process workers (utilisation = active jobs / renderers);
        broker: (amqp url, queue names) whose ready messages are counted;
        storage: (SeaweedServer, bucket) whose size, and the database's, are sampled every
        ``storage_every_s`` (soak mode: growth per job).
        """
        self.storage, self.storage_every_s, self._storage_at = storage, storage_every_s, 0.0
        self.out, self.components, self.db_url = out, components, db_url
        self.hosts, self.renderers, self.broker, self.interval = hosts or [], renderers, broker, interval
        self._procs: dict[int, psutil.Process] = {}
        self._busy: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store = None
        out.mkdir(parents=True, exist_ok=True)
        self._files = {}
        for name, header in (
            ("resources", ["t", "name", "kind", "rss_mb", "cpu_pct", "fds", "procs"]),
            ("queue", ["t", "queued", "active", "done", "dead", "broker_ready", "loadavg"]),
            ("util", ["t", "name", "busy"]),
            ("storage", ["t", "db_mb", "objects", "bucket_mb"]),
        ):
            fh = (out / f"{name}.csv").open("w", newline="")
            writer = csv.writer(fh)
            writer.writerow(header)
            self._files[name] = (fh, writer)

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for fh, _ in self._files.values():
            fh.close()
        if self._store is not None:
            self._store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a sample lost is noted, the run goes on
                print(f"load monitor: sample failed: {type(exc).__name__}: {exc}", flush=True)
            self._stop.wait(max(0.1, self.interval - (time.monotonic() - began)))

    def sample(self) -> None:
        now = time.time()
        self._resources(now)
        self._queue(now)
        self._utilisation(now)
        if self.storage is not None and now - self._storage_at >= self.storage_every_s:
            self._storage_at = now
            self._storage(now)
        for fh, _ in self._files.values():
            fh.flush()

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only starts the clock
            except psutil.Error:
                return None
            self._procs[pid] = proc
        return proc

    def _resources(self, now: float) -> None:
        _, writer = self._files["resources"]
        for name, kind, pids in self.components():
            rss = cpu = fds = n = 0
            for child in tree(pids):
                proc = self._process(child.pid)
                if proc is None:
                    continue
                try:
                    with proc.oneshot():
                        rss += proc.memory_info().rss
                        cpu += proc.cpu_percent(None)
                        fds += proc.num_fds()
                    n += 1
                except psutil.Error:
                    self._procs.pop(child.pid, None)
            writer.writerow([f"{now:.3f}", name, kind, f"{rss / 2**20:.1f}", f"{cpu:.1f}", fds, n])

    def _queue(self, now: float) -> None:
        _, writer = self._files["queue"]
        if self._store is None:
            from comfyui_sonic.runner.store import JobStore

            self._store = JobStore(self.db_url)
        counts = self._store.counts()
        ready = self._broker_ready()
        writer.writerow(
            [
                f"{now:.3f}",
                counts.get("queued", 0) + counts.get("failed", 0),
                sum(counts.get(s, 0) for s in ACTIVE),
                counts.get("done", 0),
                counts.get("dead", 0),
                "" if ready is None else ready,
                f"{os.getloadavg()[0]:.2f}",
            ]
        )
        if self.renderers:
            active = sum(counts.get(s, 0) for s in ACTIVE)
            self._files["util"][1].writerow(
                [f"{now:.3f}", "embedded", f"{min(1.0, active / self.renderers):.3f}"]
            )

    def _storage(self, now: float) -> None:
        from sqlalchemy import text

        with self._store.engine.connect() as conn:
            db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        server, bucket = self.storage
        objects = size = 0
        for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                objects += 1
                size += item["Size"]
        self._files["storage"][1].writerow(
            [f"{now:.3f}", f"{db_bytes / 2**20:.2f}", objects, f"{size / 2**20:.2f}"]
        )

    def _broker_ready(self) -> int | None:
        if self.broker is None:
            return None
        url, queues = self.broker
        try:
            from kombu import Connection

            with Connection(url, connect_timeout=2) as conn:
                channel = conn.channel()
                return sum(channel.queue_declare(queue=q, passive=True).message_count for q in queues)
        except Exception:  # noqa: BLE001 - the broker may be down (a fault): no sample
            return None

    def _utilisation(self, now: float) -> None:
        _, writer = self._files["util"]
        for name, url in self.hosts:
            try:
                with urllib.request.urlopen(url + "/_fake/stats", timeout=2) as resp:
                    busy = float(json.load(resp)["busy_seconds"])
            except (OSError, ValueError, KeyError):
                continue  # a host killed by a fault: no sample
            before = self._busy.get(name)
            self._busy[name] = (now, busy)
            if before is not None and now > before[0] and busy >= before[1]:
                writer.writerow(
                    [f"{now:.3f}", name, f"{min(1.0, (busy - before[1]) / (now - before[0])):.3f}"]
                )
