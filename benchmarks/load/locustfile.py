"""Locust test of a Sonic job API deployment: the seeds' client, on a stepped ramp.

Each user is a client of the service: it submits a face and a speech clip (multipart, with
an API key), follows the job (polling ``GET /v1/jobs/{id}`` or the ``/events`` stream) and
downloads the output, as the services that call us do. Against any deployment::

    SONIC_API_KEY=sk_... SONIC_LOAD_STEPS=10:60,50:60,100:60 \\
        locust -f benchmarks/load/locustfile.py --headless --host https://sonic.example.com

Settings (environment, so that every Locust runner, distributed ones included, sees them):

    SONIC_LOAD_STEPS        users per step, USERS:SECONDS,... (default 5:30,10:30,20:30)
    SONIC_API_KEY           Authorization: Bearer key (none: the server must run --no-auth)
    SONIC_LOAD_PACE_S       0: a user submits its next job when its last one ended (closed loop);
                            > 0: a user submits every PACE seconds on average and follows each
                            job in the background (users / PACE submissions per second, an open loop)
    SONIC_LOAD_ARRIVALS     poisson: a user's gaps are random (exponential, mean PACE), so the
                            users together are a Poisson stream, as independent clients are
                            (default); paced: exactly PACE apart (Locust's constant_pacing: the
                            users spawned together then submit together, a burst each PACE)
    SONIC_LOAD_FOLLOW       poll | events | none (default poll); SONIC_LOAD_POLL_S (default 1)
    SONIC_LOAD_JOB_TIMEOUT_S  a job not ended by then counts as error "timeout" (default 300)
    SONIC_LOAD_DOWNLOAD     1: download every output (default 1)
    SONIC_LOAD_TEMPLATE     template prefix; the tier is appended (default sonic_lite -> sonic_lite_fast)
    SONIC_LOAD_TIERS        fast=0.3,balanced=0.5,hq=0.2;  SONIC_LOAD_PRIORITIES  P0=0.1,P1=0.3,P2=0.6
    SONIC_LOAD_IMAGE / SONIC_LOAD_AUDIO  files to send (default the demo face and speech clip)
    SONIC_LOAD_JOBS_FILE    JSON lines of every submission and job end (the report reads them)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import gevent
from locust import FastHttpUser, LoadTestShape, constant, constant_pacing, events, task
from urllib3 import encode_multipart_formdata

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `locust -f benchmarks/load/locustfile.py` from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.load.jobs_log import JobsLog, error_kind  # noqa: E402
from benchmarks.load.steps import parse_steps, spawn_rate, step_at  # noqa: E402

FINAL = {"done", "dead", "cancelled"}


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _weights(text: str) -> tuple[list[str], list[float]]:
    pairs = [p.split("=") for p in text.split(",") if "=" in p]
    return [k.strip() for k, _ in pairs], [float(w) for _, w in pairs]


STEPS = parse_steps(_env("SONIC_LOAD_STEPS", "5:30,10:30,20:30"))
PACE_S = float(_env("SONIC_LOAD_PACE_S", "0"))
ARRIVALS = _env("SONIC_LOAD_ARRIVALS", "poisson")
FOLLOW = _env("SONIC_LOAD_FOLLOW", "poll")
POLL_S = float(_env("SONIC_LOAD_POLL_S", "1"))
JOB_TIMEOUT_S = float(_env("SONIC_LOAD_JOB_TIMEOUT_S", "300"))
DOWNLOAD = _env("SONIC_LOAD_DOWNLOAD", "1") == "1"
TEMPLATE = _env("SONIC_LOAD_TEMPLATE", "sonic_lite")
TIERS = _weights(_env("SONIC_LOAD_TIERS", "fast=0.3,balanced=0.5,hq=0.2"))
PRIORITIES = _weights(_env("SONIC_LOAD_PRIORITIES", "P0=0.1,P1=0.3,P2=0.6"))
IMAGE = Path(_env("SONIC_LOAD_IMAGE", str(ROOT / "demo" / "sonic_example_face.jpg")))
AUDIO = Path(_env("SONIC_LOAD_AUDIO", str(ROOT / "demo" / "sonic_example_speech.wav")))
LOG = JobsLog(os.environ.get("SONIC_LOAD_JOBS_FILE"))
T0 = [time.time()]  # reset when the test starts: the steps are counted from then


@events.test_start.add_listener
def _started(**_kw) -> None:
    T0[0] = time.time()
    LOG.write("start", {"t": T0[0], "steps": [vars(s) for s in STEPS], "pace_s": PACE_S})


class StepShape(LoadTestShape):
    """The stepped ramp of SONIC_LOAD_STEPS; the test stops after the last step."""

    def tick(self):
        step = step_at(STEPS, self.get_run_time())
        if step is None:
            return None
        return step.users, spawn_rate(STEPS, step)


def poisson_pacing(mean_s: float):
    """A Locust ``wait_time``: the user's submissions are a Poisson process of rate 1 / mean_s.

    Each next submission is due an exponential gap after the last one was due (not after it
    ended), so a slow answer does not lower the offered rate; a user that fell behind starts
    again from now instead of firing its missed submissions back to back.
    """

    def wait_time(user) -> float:
        now = time.monotonic()
        due = getattr(user, "_due", now) + random.expovariate(1.0 / mean_s)
        user._due = max(due, now)
        return user._due - now

    return wait_time


def _wait_time():
    if PACE_S <= 0:
        return constant(0)
    if ARRIVALS == "paced":
        return constant_pacing(PACE_S)
    if ARRIVALS != "poisson":
        raise SystemExit(f"SONIC_LOAD_ARRIVALS={ARRIVALS!r}: use poisson or paced")
    return poisson_pacing(PACE_S)


class SonicClient(FastHttpUser):
    """One client. FastHttpUser (geventhttpclient): the load generator shares the machine with
    the service here, and Locust's requests-based client cost ~2.3 ms of CPU per submission."""

    wait_time = _wait_time()
    concurrency = 200  # connections: each job is followed in the background (pace > 0)
    network_timeout = max(60.0, JOB_TIMEOUT_S)  # an event stream is quiet while a job renders

    def on_start(self) -> None:
        key = os.environ.get("SONIC_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.image, self.audio = IMAGE.read_bytes(), AUDIO.read_bytes()
        if PACE_S > 0 and ARRIVALS == "poisson":
            # Users spawned in one batch would all submit at once: start each at a random phase.
            self._due = time.monotonic() + random.uniform(0, PACE_S)
            gevent.sleep(self._due - time.monotonic())

    @task
    def one_job(self) -> None:
        job = self.submit()
        if job is None:
            return
        if PACE_S > 0:
            gevent.spawn(self.follow, job)
        else:
            self.follow(job)

    def submit(self) -> dict | None:
        tier = random.choices(*TIERS)[0]
        priority = random.choices(*PRIORITIES)[0]
        started = time.time()
        step = step_at(STEPS, started - T0[0])
        record = {"t": started, "step": step.index if step else -1, "tier": tier, "priority": priority}
        body, content_type = encode_multipart_formdata(
            {
                "image": (IMAGE.name, self.image, "image/jpeg"),
                "audio": (AUDIO.name, self.audio, "audio/wav"),
                "template": f"{TEMPLATE}_{tier}",
                "priority": priority,
            }
        )
        # As the seeds' clients do: a key per submission, so a retry can never make a second job.
        headers = {**self.headers, "Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex}
        record["key"] = headers["Idempotency-Key"]
        # Before the request: a submission cut off by the end of the test is still known by its key.
        LOG.write("sending", {"t": started, "key": record["key"]})
        with self.client.post(
            "/v1/jobs", data=body, headers=headers, name="POST /v1/jobs", catch_response=True
        ) as resp:
            record["submit_ms"] = (time.time() - started) * 1000
            record["code"] = resp.status_code
            if resp.status_code in (200, 202):  # 200: the same Idempotency-Key seen before
                record["id"] = json.loads(resp.content)["id"]
                resp.success()
            elif resp.status_code == 0:  # no answer: refused, reset, timed out
                record["error"] = f"connection:{type(getattr(resp, 'error', None)).__name__}"
                resp.failure(record["error"])
            else:
                record["error"] = error_kind(resp.status_code, _text(resp))
                resp.failure(record["error"])
        LOG.write("submit", record)
        return record if "id" in record else None

    def follow(self, job: dict) -> None:
        if FOLLOW == "none":
            return
        end = {"id": job["id"], "t_submit": job["t"], "step": job["step"]}
        try:
            status = self.wait_events(job["id"]) if FOLLOW == "events" else self.wait_poll(job["id"])
            if status is None:
                end["error"] = "timeout"
            else:
                end["state"] = status["status"]
                end["timings"] = status.get("timings")
                end["attempts"] = len(status.get("attempts") or [])
                if status["status"] != "done":
                    end["error"] = f"job_{status['status']}:{(status.get('error') or {}).get('kind')}"
                elif DOWNLOAD:
                    end["bytes"] = self.download(status)
                    if end["bytes"] == 0:
                        end["error"] = "download"
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # noqa: BLE001
            end["error"] = f"follow:{type(exc).__name__}"
        end["e2e_s"] = time.time() - job["t"]
        LOG.write("end", end)

    def status(self, job_id: str) -> dict | None:
        with self.client.get(
            f"/v1/jobs/{job_id}", headers=self.headers, name="GET /v1/jobs/{id}", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(error_kind(resp.status_code, _text(resp)))
                return None
            return json.loads(resp.content)

    def wait_poll(self, job_id: str) -> dict | None:
        deadline = time.time() + JOB_TIMEOUT_S
        while time.time() < deadline:
            status = self.status(job_id)
            if status is not None and status["status"] in FINAL:
                return status
            gevent.sleep(POLL_S)
        return None

    def wait_events(self, job_id: str) -> dict | None:
        deadline = time.time() + JOB_TIMEOUT_S
        while time.time() < deadline:
            with self.client.get(
                f"/v1/jobs/{job_id}/events",
                headers=self.headers,
                name="GET /v1/jobs/{id}/events",
                stream=True,
                catch_response=True,
            ) as resp:
                if resp.status_code == 200 and _ended(resp):
                    resp.success()
                    return self.status(job_id)
                resp.success()  # the stream ended (a replica went away): follow again
            gevent.sleep(POLL_S)
        return None

    def download(self, status: dict) -> int:
        total = 0
        for output in status.get("outputs") or []:
            with self.client.get(
                output["url"], name="GET output", headers=self.headers, catch_response=True
            ) as resp:
                if resp.status_code != 200:
                    resp.failure(error_kind(resp.status_code, _text(resp)))
                    return 0
                total += len(resp.content)
        return total


def _text(resp) -> str:
    """The body as text (FastResponse.text would guess the charset with chardet: CPU for nothing)."""
    return (resp.content or b"").decode("utf-8", "replace")


def _ended(resp) -> bool:
    """Whether the server-sent event stream reported a final state before it closed."""
    pending = ""
    for chunk in resp.iter_content(chunk_size=4096, decode_content=True):
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith("data:") and json.loads(line[5:]).get("state") in FINAL:
                return True
    return False
