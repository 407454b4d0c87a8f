"""What an operator (or a script) sees while a batch runs.

Three event sinks, each a callable taking one batch event (see the events in
the runner contract) and each with close() for the end of the batch:

- RichProgressDisplay: a live view (overall bar with ETA, per-host done /
  running / failed / dead) in a terminal; when the output is not a terminal
  (a CI log, a pipe, nohup) it prints a plain status line every few seconds
  instead of redrawing, so logs stay readable.
- QuietSink: nothing while all is well; each dead job's error as it happens,
  and one summary line at the end.
- JsonLinesSink: every event as one JSON object per line, for scripts.

Sinks never raise into the batch: a failure inside one is counted in
`errors` and logged once. Every string they write goes through redact().
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from .secrets import host_label, redact, redact_obj

log = logging.getLogger(__name__)

IN_FLIGHT = frozenset({"uploading", "submitted", "running", "fetching"})


def event_host(event: dict) -> str:
    """The host of an event as a person reads it: "gpu1 (http://10.0.0.5:8188)", the URL, or "-"."""
    host = event.get("host")
    return host_label(event.get("host_name"), host) if host else "-"


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _GuardedSink:
    """Base: turns any exception inside a sink into a count and one log line."""

    errors = 0

    def __call__(self, event: dict) -> None:
        try:
            self.handle(event)
        except Exception as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning(
                    "%s: ignored a failure while showing an event: %s", type(self).__name__, redact(str(exc))
                )

    def handle(self, event: dict) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.finish()
        except Exception as exc:
            self.errors += 1
            log.warning("%s: ignored a failure while closing: %s", type(self).__name__, redact(str(exc)))

    def finish(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class BatchTally:
    """Counts the display needs, kept from job/host/batch events (thread-safe)."""

    def __init__(self, total: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.total = total
        self.jobs: dict[str, tuple[str, str | None]] = {}  # job_id -> (state, host)
        self.hosts: dict[str, Counter] = {}
        self.unhealthy: dict[str, str] = {}
        self.excluded: dict[str, str] = {}  # hosts that cannot run the workflow -> why
        self.batch: dict | None = None  # the latest batch event (counts resumed jobs too)
        self.started = clock()
        self.first_seen: tuple[float, int] | None = None  # (time, finished count) for the ETA

    def _host(self, name: str) -> Counter:
        return self.hosts.setdefault(name, Counter())

    def update(self, event: dict) -> None:
        kind = event.get("event")
        with self.lock:
            if kind == "job":
                self._job(event)
            elif kind == "host":
                name = event_host(event)
                self._host(name)
                if event.get("excluded"):
                    self.excluded[name] = redact(event.get("error") or "cannot run this workflow")
                elif event.get("healthy"):
                    self.unhealthy.pop(name, None)
                else:
                    self.unhealthy[name] = redact(event.get("error") or "unreachable")
            elif kind == "batch":
                self.batch = dict(event)
                if event.get("total") is not None:
                    self.total = event["total"]
            if self.first_seen is None and (kind == "batch" or kind == "job"):
                self.first_seen = (self.clock(), self._finished())

    def _job(self, event: dict) -> None:
        job_id, state, host = str(event.get("job_id")), event.get("state"), event_host(event)
        old_state, old_host = self.jobs.get(job_id, (None, None))
        if old_state in IN_FLIGHT:
            self._host(old_host)["running"] -= 1
        if state in IN_FLIGHT:
            self._host(host)["running"] += 1
        elif state in ("done", "dead", "failed") and state != old_state:
            self._host(host)[state] += 1
        self.jobs[job_id] = (state, host)

    def _finished(self) -> int:
        if self.batch is not None:
            return int(self.batch.get("done", 0)) + int(self.batch.get("dead", 0))
        return sum(c["done"] + c["dead"] for c in self.hosts.values())

    def snapshot(self) -> dict[str, Any]:
        """Overall numbers: total, done, dead, running, waiting (queued or in backoff), finished, elapsed, eta."""
        with self.lock:
            # Own counts are current; the periodic batch event lags but includes jobs
            # finished before a resume. Finished counts only grow, so the larger is right.
            done = sum(c["done"] for c in self.hosts.values())
            dead = sum(c["dead"] for c in self.hosts.values())
            running = sum(max(0, c["running"]) for c in self.hosts.values())
            if self.batch is not None:
                done = max(done, int(self.batch.get("done", 0)))
                dead = max(dead, int(self.batch.get("dead", 0)))
                if not self.jobs:
                    running = int(self.batch.get("running", 0))
            now = self.clock()
            finished = done + dead
            waiting = None if self.total is None else max(0, self.total - finished - running)
            eta = None
            if self.total is not None and self.first_seen is not None:
                since, base = self.first_seen
                progressed, elapsed = finished - base, now - since
                if finished >= self.total:
                    eta = 0.0
                elif progressed > 0 and elapsed > 0:
                    eta = (self.total - finished) * elapsed / progressed
            return {
                "total": self.total,
                "done": done,
                "dead": dead,
                "running": running,
                "waiting": waiting,
                "finished": finished,
                "elapsed": now - self.started,
                "eta": eta,
            }

    def host_rows(self) -> list[tuple[str, int, int, int, int, str | None]]:
        """(host, done, running, failed, dead, unhealthy or excluded error) per host, sorted by name."""
        with self.lock:
            return [
                (
                    name,
                    c["done"],
                    max(0, c["running"]),
                    c["failed"],
                    c["dead"],
                    self.excluded.get(name) or self.unhealthy.get(name),
                )
                for name, c in sorted(self.hosts.items())
            ]

    def summary_line(self) -> str:
        s = self.snapshot()
        total = s["total"] if s["total"] is not None else s["finished"]
        parts = [f"{s['done']} done", f"{s['dead']} dead"]
        unfinished = total - s["finished"]
        if unfinished > 0:
            parts.append(f"{unfinished} not finished")
        return f"batch: {total} jobs, {', '.join(parts)} in {format_duration(s['elapsed'])}"

    def waiting_line(self, now: float | None = None) -> str | None:
        """While no host can work: how long the batch has waited and until when it waits (or None)."""
        with self.lock:
            batch = dict(self.batch or {})
        since, until = batch.get("no_host_since"), batch.get("give_up_at")
        if since is None or until is None:
            return None
        now = time.time() if now is None else now
        return (
            f"no host can work for {format_duration(max(0.0, now - since))}; waiting until "
            f"{time.strftime('%H:%M:%S', time.localtime(until))} (--give-up-after), then stopping "
            "with the unfinished jobs queued"
        )

    def status_line(self) -> str:
        s = self.snapshot()
        total = "?" if s["total"] is None else s["total"]
        line = (
            f"{s['finished']}/{total} finished ({s['done']} done, {s['dead']} dead), {s['running']} running"
        )
        if s["waiting"] is not None:
            line += f", {s['waiting']} waiting"
        line += f", elapsed {format_duration(s['elapsed'])}, ETA {format_duration(s['eta'])}"
        for name, done, running, failed, dead, down in self.host_rows():
            line += f" | {name}: {done} done, {running} running, {failed} failed, {dead} dead"
            if name in self.excluded:
                line += " (excluded)"
            elif down:
                line += " (down)"
        waiting = self.waiting_line()
        if waiting:
            line += f" | {waiting}"
        return line


def _dead_message(event: dict) -> str | None:
    if event.get("event") == "job" and event.get("state") == "dead":
        where = f" on {event_host(event)}" if event.get("host") else ""
        kind = f" [{event['error_kind']}]" if event.get("error_kind") else ""
        return (
            f"job {redact(str(event.get('job_id')))} (row {event.get('row')}) dead{where}{kind}: "
            f"{redact(event.get('error') or 'no error given')}"
        )
    return None


def _host_message(event: dict, tally: BatchTally) -> str | None:
    """A line when a host goes down or comes back (not on every repeated health check)."""
    if event.get("event") != "host":
        return None
    name = event_host(event)
    if event.get("excluded"):
        if name in tally.excluded:
            return None
        return f"host {name} is excluded from this batch: {redact(event.get('error') or 'cannot run this workflow')}"
    was_down = name in tally.unhealthy
    if event.get("healthy") and was_down:
        return f"host {name} is healthy again"
    if not event.get("healthy") and not was_down:
        return f"host {name} is unhealthy: {redact(event.get('error') or 'unreachable')}"
    return None


class RichProgressDisplay(_GuardedSink):
    """Live progress in a terminal; a periodic plain status line anywhere else."""

    def __init__(
        self,
        total: int | None = None,
        console: Any = None,
        *,
        plain_interval: float = 10.0,
        refresh_per_second: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.tally = BatchTally(total, clock)
        self.clock = clock
        self.plain_interval = plain_interval
        self.refresh_per_second = refresh_per_second
        self.live_mode = bool(self.console.is_terminal)
        self._last_line = clock()
        self._live = None
        self._progress = None
        self._task = None
        self._closed = False
        self._start_lock = threading.Lock()  # events come from several batch threads

    # -- sink ---------------------------------------------------------------

    def handle(self, event: dict) -> None:
        if self._closed:
            return
        host_message = _host_message(event, self.tally)
        self.tally.update(event)
        messages = [m for m in (_dead_message(event), host_message) if m]
        if self.live_mode:
            self._ensure_live()
            if self._live is None:  # closed meanwhile
                return
            self._update_bar()
            for message in messages:
                self._live.console.print(message, markup=False, highlight=False, style="red")
        else:
            for message in messages:
                self._plain(message)
            now = self.clock()
            if now - self._last_line >= self.plain_interval:
                self._last_line = now
                self._plain(self.tally.status_line())

    def finish(self) -> None:
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        if self._live is not None:
            self._update_bar()
            self._live.refresh()
            self._live.stop()
        else:
            self._plain(self.tally.status_line())
        self._plain(self.tally.summary_line())

    # -- plain output ---------------------------------------------------------

    def _plain(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"[{stamp}] {line}", markup=False, highlight=False, soft_wrap=True)

    # -- live output ----------------------------------------------------------

    def _ensure_live(self) -> None:
        with self._start_lock:
            if self._live is None and not self._closed:
                self._start_live()

    def _start_live(self) -> None:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        snap = self.tally.snapshot()
        # Start the bar at what is already finished (a resumed batch) so the ETA measures this run's speed.
        self._task = self._progress.add_task(
            "batch", total=snap["total"], completed=snap["finished"], detail=""
        )
        self._live = Live(
            _LiveView(self),
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def _update_bar(self) -> None:
        snap = self.tally.snapshot()
        detail = f"{snap['done']} done, {snap['dead']} dead, {snap['running']} running"
        waiting = self.tally.waiting_line()
        if waiting:
            detail += f" - {waiting}"
        self._progress.update(self._task, total=snap["total"], completed=snap["finished"], detail=detail)

    def host_table(self):
        from rich.table import Table

        table = Table(box=None, padding=(0, 2), show_edge=False)
        for column in ("host", "done", "running", "failed", "dead", "health"):
            table.add_column(column, justify="left" if column in ("host", "health") else "right")
        for name, done, running, failed, dead, down in self.tally.host_rows():
            health = f"excluded: {down}" if name in self.tally.excluded else f"down: {down}" if down else "ok"
            table.add_row(name, str(done), str(running), str(failed), str(dead), health)
        return table


class _LiveView:
    """What rich.live redraws: the overall bar and the per-host table (rebuilt on each refresh)."""

    def __init__(self, display: RichProgressDisplay) -> None:
        self.display = display

    def __rich__(self):
        from rich.console import Group

        return Group(self.display._progress, self.display.host_table())


class QuietSink(_GuardedSink):
    """Silent while all is well: dead jobs and host failures on `err`, one summary line on `out` at the end."""

    def __init__(
        self,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.err = err
        self.tally = BatchTally(None, clock)
        self._closed = False

    def handle(self, event: dict) -> None:
        host_message = _host_message(event, self.tally)
        self.tally.update(event)
        for message in (_dead_message(event), host_message):
            if message:
                self._write(self.err or sys.stderr, message)

    def finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(self.out or sys.stdout, self.tally.summary_line())

    @staticmethod
    def _write(stream: IO[str], line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


class JsonLinesSink(_GuardedSink):
    """Every event as one JSON object per line (secrets redacted), flushed at once for a reader on a pipe."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._broken = False

    def handle(self, event: dict) -> None:
        if self._broken:
            return
        line = json.dumps(redact_obj(event), default=str, separators=(",", ":")) + "\n"
        stream = self.stream or sys.stdout
        with self._lock:
            try:
                stream.write(line)
                stream.flush()
            except (BrokenPipeError, ValueError):  # reader went away / stream closed: stop writing
                self._broken = True
                raise

    def finish(self) -> None:
        if not self._broken:
            with self._lock:
                (self.stream or sys.stdout).flush()


class NodeProgressDisplay(_GuardedSink):
    """Progress of one in-process run (`sonic-runner run` without --host): a bar per node that reports steps.

    In a terminal it is a rich progress bar; elsewhere one plain line per node and
    per quarter of its steps, so logs stay short. Either way the text a node shows in ComfyUI
    (the face crop and any warning, the lip-sync offset, the saved file) is printed as one line.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.live_mode = bool(self.console.is_terminal)
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self._quarters: dict[str, int] = {}

    def handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "node" and not self.live_mode:
            self.console.print(f"running {event.get('title')}", highlight=False)
        elif kind == "progress":
            self._advance(
                str(event.get("node")), str(event.get("title")), int(event["value"]), int(event["max"])
            )
        elif kind == "executed":  # what ComfyUI shows on the node: the face crop, warnings, the offset
            for line in (event.get("output") or {}).get("text") or ():
                self.console.print(
                    f"{event.get('title')}: {redact(str(line))}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )

    def _advance(self, node: str, title: str, value: int, total: int) -> None:
        if self.live_mode:
            if self._progress is None:
                from rich.progress import (
                    BarColumn,
                    Progress,
                    TaskProgressColumn,
                    TextColumn,
                    TimeRemainingColumn,
                )

                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TaskProgressColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self._progress.start()
            if node not in self._tasks:
                self._tasks[node] = self._progress.add_task(title, total=total)
            self._progress.update(self._tasks[node], completed=value, total=total)
            return
        quarter = 4 * value // max(total, 1)
        if quarter > self._quarters.get(node, 0):
            self._quarters[node] = quarter
            self.console.print(f"{title}: {value}/{total}", highlight=False)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
