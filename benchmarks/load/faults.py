"""Faults injected during a load run, at set times: ``ACTION@SECONDS[:ARG]``.

    kill-worker@60        kill -9 one worker mid-job, start it again 5 s later (a supervisor would)
    restart-broker@90     kill RabbitMQ and start it again (fleet mode)
    stop-replica@120:30   SIGTERM one serve replica, start it again after 30 s (nginx routes around it)
    kill-host@45:20       kill -9 one fake ComfyUI host, back after 20 s (a GPU host lost)
    oom@30:0.1            from then on 10% of jobs on every host end out of memory

Each injection is recorded (faults.jsonl: when, what, to which component) so the report can
mark it on the charts and the accounting can show that nothing was lost or run twice.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ACTIONS = {"kill-worker": None, "restart-broker": None, "stop-replica": 30.0, "kill-host": 20.0, "oom": 0.1}
FLEET_ONLY = {"kill-worker", "restart-broker", "oom", "kill-host"}


class FaultError(ValueError):
    """A fault spec that cannot be read."""


@dataclass(frozen=True)
class Fault:
    action: str
    at_s: float
    arg: float | None

    def __str__(self) -> str:
        return f"{self.action}@{self.at_s:g}" + (f":{self.arg:g}" if self.arg is not None else "")


def parse_fault(text: str) -> Fault:
    action, sep, rest = text.partition("@")
    at, _, arg = rest.partition(":")
    try:
        if action not in ACTIONS or not sep:
            raise ValueError
        value = float(arg) if arg else ACTIONS[action]
        return Fault(action, float(at), value)
    except ValueError:
        raise FaultError(
            f"--fault {text!r}: write ACTION@SECONDS[:ARG] with ACTION one of {', '.join(ACTIONS)}, "
            "e.g. stop-replica@120:30 or oom@30:0.1"
        ) from None


class FaultRunner:
    """Fires each fault at its time (seconds after start()) on the stack, in a thread."""

    def __init__(self, stack, faults: list[Fault], log: Path) -> None:
        self.stack, self.faults, self.log = stack, sorted(faults, key=lambda f: f.at_s), log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FaultRunner:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="load-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def _run(self) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, fault.at_s - (time.monotonic() - self._t0))):
                return
            started = time.time()
            try:
                detail = self.stack.inject(fault)
                ok = True
            except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                detail, ok = f"{type(exc).__name__}: {exc}", False
            record = {"t": started, "fault": str(fault), "action": fault.action, "ok": ok, "detail": detail}
            record["took_s"] = time.time() - started
            with self.log.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"load: fault {fault}: {detail}", flush=True)
