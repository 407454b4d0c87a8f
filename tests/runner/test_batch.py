"""The batch orchestrator against in-memory hosts: retries, OOM tiers, failover, priorities, timeouts.

`MemHost` follows the ComfyClient contract (runner_shared.md) without a network, so every
orchestration rule is checked in milliseconds; test_resume_kill.py and test_cli.py run the
same machinery against the fake ComfyUI server over real HTTP and websockets.
"""

from __future__ import annotations

import json
import threading
import time
import wave
from pathlib import Path

import pytest
from comfyui_sonic.runner.batch import Batch, BatchConfig, build_jobs
from comfyui_sonic.runner.host_errors import (
    HostOOMError,
    JobInputError,
    JobTimeoutError,
    TransientHostError,
    ValidationHostError,
)
from comfyui_sonic.runner.retry import RetryPolicy
from comfyui_sonic.runner.secrets import HostSpec


def write_wav(path: Path, seconds: float = 0.2, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return path


MODEL_ERROR = {
    "node_id": "3",
    "node_type": "SONIC_ModelLoader",
    "exception_type": "/tmp/comfy/custom_nodes/ComfyUI-Sonic.nodes.engine.errors.SonicModelError",
    "exception_message": "sonic weights: unet.pth not found in models/sonic",
}


class MemHost:
    """One host. `script`: list of outcomes consumed per submission ("ok", "oom", "input", "validation",
    "submit_500", "drop" (wait raises socket error, prompt keeps running), "restart" (host forgets it)).
    `model_missing`: every job ends with the host's SonicModelError (the Sonic weights are not there)."""

    def __init__(self, url: str, run_seconds: float = 0.0, script: list[str] | None = None) -> None:
        self.url = url
        self.run_seconds = run_seconds
        self.script = list(script or [])
        self.down = False
        self.lock = threading.Lock()
        self.prompts: dict[str, dict] = {}  # prompt_id -> {"state", "prompt", "outcome"}
        self.executions: list[str] = []
        self.submitted_prompts: list[dict] = []
        self.uploads = 0
        self.forgotten = 0
        self.download_failures = 0
        self.model_missing = False

    # contract ----------------------------------------------------------
    def _check(self) -> None:
        if self.down:
            raise TransientHostError(f"{self.url}: connection refused", kind="connection")

    def system_stats(self) -> dict:
        self._check()
        return {"system": {"comfyui_version": "mem"}}

    def upload(self, path: Path, subfolder: str = "sonic") -> str:
        self._check()
        try:
            Path(path).read_bytes()
        except OSError as exc:  # as ComfyClient.upload says it
            raise ValueError(f"{path}: cannot read the file to upload ({exc.strerror})") from exc
        self.uploads += 1
        return f"{subfolder}/{Path(path).name}"

    def forget_uploads(self) -> None:
        self.forgotten += 1

    def submit(self, prompt: dict, prompt_id: str, client_id: str, front: bool = False) -> None:
        self._check()
        with self.lock:
            outcome = self.script.pop(0) if self.script else "ok"
        if self.model_missing:
            outcome = "model"
        if outcome == "validation":
            raise ValidationHostError("prompt_outputs_failed_validation: Required input is missing: images")
        if outcome == "stale":  # the host lost the uploaded portrait (restarted on fresh storage)
            raise ValidationHostError("LoadImage: image - Invalid image file", details=STALE_UPLOAD)
        if outcome == "submit_500":
            raise TransientHostError("HTTP 500 from /prompt", kind="http_5xx")
        if outcome == "late":  # the request timed out on our side; the host queues it a moment later
            late = {"state": "pending", "outcome": "ok", "prompt": prompt}
            threading.Timer(0.3, lambda: self.prompts.setdefault(prompt_id, late)).start()
            self.submitted_prompts.append(prompt)
            raise TransientHostError("read timed out", kind="timeout")
        self.submitted_prompts.append(prompt)
        self.prompts[prompt_id] = {"state": "pending", "outcome": outcome, "prompt": prompt}

    def prompt_status(self, prompt_id: str) -> str:
        self._check()
        entry = self.prompts.get(prompt_id)
        return "unknown" if entry is None else entry["state"]

    def history(self, prompt_id: str) -> dict | None:
        self._check()
        entry = self.prompts.get(prompt_id)
        return entry.get("history") if entry else None

    def wait(self, prompt_id, client_id, timeout, on_event=None, poll_interval=2.0) -> dict:
        self._check()
        entry = self.prompts.get(prompt_id)
        if entry is None:
            raise TransientHostError("host restarted", kind="restart")
        if entry["state"] == "done":
            return self._result(prompt_id, entry)
        outcome = entry["outcome"]
        if entry["state"] == "pending":
            entry["state"] = "running"
            self.executions.append(prompt_id)
        if on_event:
            on_event({"type": "execution_start", "data": {"prompt_id": prompt_id}})
            on_event({"type": "progress", "data": {"prompt_id": prompt_id, "value": 1, "max": 2}})
        if outcome == "drop":
            entry["outcome"] = "ok"  # keeps running; the socket dropped
            raise TransientHostError("websocket closed", kind="socket")
        if outcome == "die":  # the host dies mid-job and stays down
            self.down = True
            self.prompts.clear()
            raise TransientHostError("websocket closed", kind="socket")
        if outcome == "partition":  # the network to the host fails; the prompt keeps running there
            entry["outcome"] = "ok"
            self.down = True
            raise TransientHostError("websocket closed", kind="socket")
        if outcome == "restart":
            self.prompts.clear()
            raise TransientHostError("host restarted", kind="restart")
        if outcome == "hang":
            time.sleep(min(timeout, 0.2))
            raise JobTimeoutError("timed out")
        time.sleep(self.run_seconds)
        entry["state"] = "done"
        status = {"status_str": "success", "completed": True, "messages": []}
        if outcome == "model":  # as real ComfyUI names a custom node's exception: module path + class
            status = {
                "status_str": "error",
                "completed": False,
                "messages": [["execution_error", MODEL_ERROR]],
            }
        if outcome in ("oom", "input"):
            exc_type = "torch.OutOfMemoryError" if outcome == "oom" else "SonicInputError"
            msg = "CUDA out of memory" if outcome == "oom" else "image: no face found; use a portrait"
            status = {
                "status_str": "error",
                "completed": False,
                "messages": [["execution_error", {"exception_type": exc_type, "exception_message": msg}]],
            }
        entry["history"] = {
            "outputs": {
                "9": {"images": [{"filename": f"{prompt_id}.wav", "subfolder": "", "type": "output"}]}
            }
            if outcome == "ok"
            else {},
            "status": status,
        }
        return self._result(prompt_id, entry)

    def _result(self, prompt_id, entry):
        if entry["outcome"] == "oom":
            raise HostOOMError("torch.OutOfMemoryError: CUDA out of memory")
        if entry["outcome"] == "input":
            raise JobInputError("SonicInputError: image: no face found; use a portrait")
        return entry["history"]

    def output_files(self, history_entry: dict) -> list[dict]:
        return [
            i
            for node in history_entry.get("outputs", {}).values()
            for items in node.values()
            for i in items
            if isinstance(i, dict) and "filename" in i
        ]

    def download(self, file_ref: dict, dest: Path) -> Path:
        self._check()
        if self.download_failures:
            self.download_failures -= 1
            raise TransientHostError("connection reset during /view", kind="connection")
        return write_wav(Path(dest), 0.05)

    def interrupt(self, prompt_id: str) -> None:
        self._check()
        entry = self.prompts.get(prompt_id)
        if entry and entry["state"] == "running":
            entry["state"] = "done"
            entry["outcome"] = "interrupted"
            entry["history"] = {
                "outputs": {},
                "status": {
                    "status_str": "error",
                    "messages": [["execution_interrupted", {"prompt_id": prompt_id}]],
                },
            }

    def delete_queued(self, prompt_ids: list[str]) -> None:
        self._check()
        for pid in prompt_ids:
            if self.prompts.get(pid, {}).get("state") == "pending":
                del self.prompts[pid]


STALE_UPLOAD = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
    "node_errors": {
        "1": {
            "class_type": "LoadImage",
            "errors": [
                {
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": "image - Invalid image file: sonic/face.png",
                    "extra_info": {"input_name": "image"},
                }
            ],
        }
    },
}


# ---------------------------------------------------------------------- fixtures
TEMPLATE = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}, "_meta": {"title": "Portrait"}},
    "2": {"class_type": "LoadAudio", "inputs": {"audio": "placeholder.wav"}, "_meta": {"title": "Speech"}},
    "3": {"class_type": "SONIC_ModelLoader", "inputs": {"backend": "lite", "checkpoint": "none"}},
    "4": {
        "class_type": "SONIC_PreData",
        "inputs": {
            "image": ["1", 0],
            "audio": ["2", 0],
            "duration": 0.0,
            "min_resolution": 768,
            "expand_ratio": 0.5,
        },
    },
    "5": {
        "class_type": "SONIC_Inference",
        "inputs": {"model": ["3", 0], "data": ["4", 0], "seed": 1, "inference_steps": 25, "fps": 25.0},
    },
    "6": {
        "class_type": "VideoEncode",
        "inputs": {
            "images": ["5", 0],
            "audio": ["5", 1],
            "fps": 25.0,
            "crf": 19,
            "filename_prefix": "sonic/sonic",
        },
    },
}


@pytest.fixture
def inputs(tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(b"png")
    audio = write_wav(tmp_path / "speech.wav", 0.2)
    workflow = tmp_path / "wf_api.json"
    workflow.write_text(json.dumps(TEMPLATE))
    return {"image": image, "audio": audio, "workflow": workflow, "dir": tmp_path}


def manifest(inputs, rows):
    path = inputs["dir"] / "manifest.jsonl"
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps({"image": str(inputs["image"]), "audio": str(inputs["audio"]), **row}) + "\n")
    return path


def make_batch(inputs, hosts, rows, sinks=(), specs=None, **config):
    config.setdefault("policy", RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05))
    config.setdefault("failover_grace", 0.3)
    config.setdefault("submit_settle", 0.05)
    config.setdefault("poll_interval", 0.05)
    cfg = BatchConfig(
        workflow_path=inputs["workflow"],
        out_dir=inputs["dir"] / "out",
        hosts=specs or [HostSpec(url=h.url) for h in hosts],
        manifest_path=manifest(inputs, rows),
        **config,
    )
    by_url = {h.url: h for h in hosts}
    batch = Batch(cfg, sinks=sinks, client_factory=lambda spec: by_url[spec.safe_url])
    batch.open()
    return batch


def run(batch):
    code = batch.run()
    return code, {j.job_id: j for j in batch.journal.jobs()}


# ---------------------------------------------------------------------- tests
def test_every_job_done_once_with_verified_outputs(inputs):
    a, b = MemHost("http://a:1"), MemHost("http://b:1")
    events = []
    batch = make_batch(inputs, [a, b], [{"id": f"clip{i}"} for i in range(6)], sinks=[events.append])
    code, jobs = run(batch)
    assert code == 0
    assert all(j.state == "done" and j.attempts == 1 for j in jobs.values())
    assert sorted(Path(j.outputs[0]).name for j in jobs.values()) == [f"clip{i}.wav" for i in range(6)]
    assert all(Path(j.outputs[0]).stat().st_size > 0 for j in jobs.values())
    assert len(a.executions) + len(b.executions) == 6 and a.executions and b.executions
    states = [e["state"] for e in events if e["event"] == "job" and e["job_id"] == "clip0"]
    assert states == ["uploading", "submitted", "running", "fetching", "done"]
    assert events[-1]["event"] == "batch" and events[-1]["done"] == 6


def test_a_sink_that_raises_never_breaks_the_batch(inputs):
    def broken(event):
        raise RuntimeError("display crashed")

    code, jobs = run(make_batch(inputs, [MemHost("http://a:1")], [{}], sinks=[broken]))
    assert code == 0


def test_http_500_on_submit_retries_with_a_new_attempt(inputs):
    host = MemHost("http://a:1", script=["submit_500"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    job = jobs["x"]
    assert code == 0 and job.state == "done" and job.attempts == 2
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["lost", "done"]


def make_journal_attempts(inputs, job_id):
    from comfyui_sonic.runner.journal import Journal

    with Journal(inputs["dir"] / "out" / "journal.sqlite") as j:
        return j.attempts(job_id)


def test_socket_drop_keeps_following_the_same_prompt(inputs):
    host = MemHost("http://a:1", script=["drop"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    assert code == 0 and jobs["x"].attempts == 1 and len(host.executions) == 1


def test_host_restart_loses_the_prompt_and_the_job_runs_again(inputs):
    host = MemHost("http://a:1", script=["restart"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    assert code == 0 and jobs["x"].attempts == 2
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["lost", "done"]


def test_oom_retries_at_the_next_lower_tier_and_records_it(inputs):
    host = MemHost("http://a:1", script=["oom"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    job = jobs["x"]
    assert code == 0 and job.attempts == 2 and job.resolution == 512
    assert any("768" in n and "512" in n for n in job.notes)
    tiers = [p["4"]["inputs"]["min_resolution"] for p in host.submitted_prompts]
    assert tiers == [768, 512]
    assert [(a["resolution"], a["error_kind"]) for a in make_journal_attempts(inputs, "x")] == [
        (768, "oom"),
        (512, None),
    ]


def test_oom_at_the_lowest_tier_is_dead(inputs):
    host = MemHost("http://a:1", script=["oom"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x", "min_resolution": 384}]))
    assert code == 1 and jobs["x"].state == "dead" and "no lower tier" in jobs["x"].error


@pytest.mark.parametrize(
    "outcome,kind,text", [("input", "input", "no face"), ("validation", "validation", "Required input")]
)
def test_bad_input_and_validation_errors_are_dead_at_once_with_the_host_message(inputs, outcome, kind, text):
    host = MemHost("http://a:1", script=[outcome])
    code, jobs = run(make_batch(inputs, [host], [{"id": "bad"}, {"id": "good"}], inflight=1))
    assert code == 1
    assert jobs["bad"].state == "dead" and jobs["bad"].attempts == 1 and jobs["bad"].error_kind == kind
    assert text in jobs["bad"].error
    assert jobs["good"].state == "done"


def test_a_bad_manifest_row_is_dead_and_the_rest_go_on(inputs):
    host = MemHost("http://a:1")
    code, jobs = run(make_batch(inputs, [host], [{"id": "ok"}, {"id": "typo", "sed": 3}]))
    assert code == 1 and jobs["ok"].state == "done"
    assert jobs["typo"].state == "dead" and "'sed'" in jobs["typo"].error and not host.executions[1:]


def test_failover_moves_jobs_of_a_dead_host_after_the_grace_period(inputs):
    dying = MemHost("http://a:1", script=["die"], run_seconds=0.0)
    spare = MemHost("http://b:1", run_seconds=0.05)
    events = []
    batch = make_batch(inputs, [dying, spare], [{"id": "x"}, {"id": "y"}], sinks=[events.append], inflight=1)
    code, jobs = run(batch)
    assert code == 0 and all(j.state == "done" and j.host == "http://b:1" for j in jobs.values())
    moved = [j for j in jobs.values() if j.attempts == 2]
    assert len(moved) == 1
    assert [a["state"] for a in make_journal_attempts(inputs, moved[0].job_id)] == ["abandoned", "done"]
    assert {"event": "host", "host": "http://a:1", "host_name": "a:1", "healthy": False} == {
        k: v for k, v in next(e for e in events if e["event"] == "host").items() if k != "error"
    }


def test_priority_lanes_run_p0_first_then_p1_then_p2(inputs):
    host = MemHost("http://a:1")
    rows = [
        {"id": "low", "priority": "P2"},
        {"id": "mid", "priority": "P1"},
        {"id": "top", "priority": "P0"},
        {"id": "mid2"},
        {"id": "top2", "priority": "P0"},
    ]
    batch = make_batch(inputs, [host], rows, inflight=1)
    order = []
    batch.sinks.append(lambda e: order.append(e["job_id"]) if e.get("state") == "submitted" else None)
    code, _ = run(batch)
    assert code == 0 and order == ["top", "top2", "mid", "mid2", "low"]


def test_capability_routing_and_a_job_no_host_can_take(inputs):
    small, big = MemHost("http://small:1"), MemHost("http://big:1")
    specs = [HostSpec(url=small.url, max_resolution=512), HostSpec(url=big.url, max_resolution=1024)]
    rows = [{"id": f"hi{i}", "min_resolution": 1024} for i in range(3)] + [
        {"id": "lo", "min_resolution": 384}
    ]
    code, jobs = run(make_batch(inputs, [small, big], rows, specs=specs))
    assert code == 0
    assert {jobs[f"hi{i}"].host for i in range(3)} == {"http://big:1"}
    only_small = [HostSpec(url=small.url, max_resolution=512)]
    code, jobs = run(
        make_batch(
            {**inputs, "dir": inputs["dir"] / "b"} if (inputs["dir"] / "b").mkdir() is None else inputs,
            [small],
            [{"id": "huge", "min_resolution": 1024}],
            specs=only_small,
        )
    )
    assert code == 1 and jobs["huge"].error_kind == "capability"
    assert "min_resolution=1024" in jobs["huge"].error and "max_resolution=512" in jobs["huge"].error


def test_per_job_timeout_cancels_the_prompt_then_retries(inputs):
    host = MemHost("http://a:1", script=["hang"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}], timeout=0.3))
    assert code == 0 and jobs["x"].attempts == 2
    first, second = make_journal_attempts(inputs, "x")
    assert first["error_kind"] == "timeout" and first["state"] == "failed" and second["state"] == "done"
    assert host.prompts[first["prompt_id"]]["outcome"] == "interrupted"  # it can no longer run


def test_duration_follows_the_audio_and_a_wrong_value_is_noted(inputs):
    host = MemHost("http://a:1")
    code, jobs = run(make_batch(inputs, [host], [{"id": "x", "duration": 5}, {"id": "y", "duration": 0.2}]))
    assert [p["4"]["inputs"]["duration"] for p in host.submitted_prompts] == [0.2, 0.2]
    assert any("corrected" in n for n in jobs["x"].notes) and not jobs["y"].notes


def resumable(inputs, hosts, rows, states):
    """A batch whose journal looks like a runner was killed with jobs in `states` (job_id -> (state, host))."""
    batch = make_batch(inputs, hosts, rows)
    for job in batch.jobs.values():
        state, host = states[job.job_id]
        batch.journal.transition(job, "uploading", host=host.url)
        if state != "uploading":
            pid = f"00000000-0000-4000-8000-{job.row:012d}"
            batch.journal.start_attempt(job, host.url, pid, "cid", job.resolution)
            if state == "running":
                batch.journal.transition(job, "running", attempt_state="running", started_at=time.time())
    batch.journal.close()
    cfg = batch.config
    cfg.resume = True
    by_url = {h.url: h for h in hosts}
    again = Batch(cfg, client_factory=lambda spec: by_url[spec.safe_url])
    again.open()
    return again


def test_resume_asks_the_host_before_anything_else(inputs):
    host = MemHost("http://a:1")
    rows = [{"id": i} for i in ("finished", "running", "queued_on_host", "never_arrived", "was_uploading")]
    states = {
        "finished": ("submitted", host),
        "running": ("running", host),
        "queued_on_host": ("submitted", host),
        "never_arrived": ("submitted", host),
        "was_uploading": ("uploading", host),
    }
    pid = {r["id"]: f"00000000-0000-4000-8000-{n:012d}" for n, r in enumerate(rows, 1)}
    done_hist = {
        "outputs": {"9": {"images": [{"filename": "f.wav", "subfolder": "", "type": "output"}]}},
        "status": {"status_str": "success"},
    }
    host.prompts[pid["finished"]] = {"state": "done", "outcome": "ok", "history": done_hist}
    host.prompts[pid["running"]] = {"state": "running", "outcome": "ok"}
    host.prompts[pid["queued_on_host"]] = {"state": "pending", "outcome": "ok"}
    batch = resumable(inputs, [host], rows, states)
    code, jobs = run(batch)
    assert code == 0 and all(j.state == "done" for j in jobs.values())
    assert {k: j.attempts for k, j in jobs.items()} == {
        "finished": 1,
        "running": 1,
        "queued_on_host": 1,
        "never_arrived": 2,
        "was_uploading": 1,
    }
    # nothing that the host still had was submitted again
    assert len(host.submitted_prompts) == 2


def test_build_jobs_marks_missing_files_dead():
    jobs = build_jobs([{"row": 1, "image": "/nope.png", "audio": "/nope.wav", "params": {}}], TEMPLATE, {})
    assert jobs[0].state == "dead" and "not found" in jobs[0].error


def test_an_abandoned_attempt_is_cancelled_when_its_host_comes_back(inputs):
    cut_off = MemHost("http://a:1", script=["partition"])
    spare = MemHost("http://b:1", run_seconds=1.5)
    threading.Timer(0.5, lambda: setattr(cut_off, "down", False)).start()
    batch = make_batch(
        inputs, [cut_off, spare], [{"id": "x"}], inflight=1, health_backoff_base=0.05, failover_grace=0.2
    )
    code, jobs = run(batch)
    assert code == 0 and jobs["x"].host == "http://b:1"
    first, second = make_journal_attempts(inputs, "x")
    assert (first["state"], second["state"]) == ("cancelled", "done")
    assert cut_off.prompts[first["prompt_id"]]["outcome"] == "interrupted"  # it will not finish there


def test_a_bad_value_ends_only_its_job_before_any_submission(inputs):
    host = MemHost("http://a:1")
    code, jobs = run(make_batch(inputs, [host], [{"id": "good", "seed": 3}, {"id": "bad", "seed": "abc"}]))
    assert code == 1 and jobs["good"].state == "done"
    assert jobs["bad"].state == "dead" and jobs["bad"].error_kind == "input" and "seed" in jobs["bad"].error
    # the failed preparation is journalled as an attempt that never reached the host
    assert jobs["bad"].attempts == 1 and len(host.submitted_prompts) == 1
    (attempt,) = make_journal_attempts(inputs, "bad")
    assert (attempt["prompt_id"], attempt["state"], attempt["error_kind"]) == ("", "dead", "input")


def test_a_submission_that_arrives_late_is_not_run_twice(inputs):
    host = MemHost("http://a:1", script=["late"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}], submit_settle=1.0))
    assert code == 0 and jobs["x"].attempts == 1 and len(host.submitted_prompts) == 1


def test_a_failed_download_is_retried_without_running_the_job_again(inputs):
    host = MemHost("http://a:1")
    host.download_failures = 1
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    assert code == 0 and jobs["x"].attempts == 1 and len(host.executions) == 1


def test_an_input_file_removed_after_the_start_ends_its_job_with_the_path(inputs):
    host = MemHost("http://a:1")
    batch = make_batch(inputs, [host], [{"id": "x"}])
    inputs["image"].unlink()
    code, jobs = run(batch)
    assert code == 1 and jobs["x"].error_kind == "input" and "face.png" in jobs["x"].error
    assert not host.submitted_prompts


# ---------------------------------------------------------------------- a host that cannot run the workflow
def test_a_host_without_the_model_files_is_excluded_and_its_jobs_run_elsewhere_at_no_cost(inputs):
    bare, full = MemHost("http://bare:1"), MemHost("http://full:1", run_seconds=0.02)
    bare.model_missing = True
    full.down = True  # (for a moment, so that the bare host surely gets the first jobs)
    threading.Timer(0.2, lambda: setattr(full, "down", False)).start()
    events = []
    one_try = RetryPolicy(max_attempts=1, backoff_base=0.01, backoff_cap=0.05)
    batch = make_batch(
        inputs,
        [bare, full],
        [{"id": f"c{i}"} for i in range(6)],
        sinks=[events.append],
        policy=one_try,
        health_backoff_base=0.05,
    )
    code, jobs = run(batch)
    # even with one attempt allowed, the jobs that met the bare host are done on the other one
    assert code == 0 and all(j.state == "done" and j.host == "http://full:1" for j in jobs.values())
    assert len(bare.executions) == 2  # only what was already in flight there when it first answered
    moved = [j for j in jobs.values() if j.attempts == 2]
    assert len(moved) == len(bare.executions)
    for job in moved:
        first, second = make_journal_attempts(inputs, job.job_id)
        assert (first["host"], first["error_kind"], second["state"]) == (
            "http://bare:1",
            "host_config",
            "done",
        )
    (excluded,) = [e for e in events if e["event"] == "host" and e.get("excluded")]
    assert excluded["host"] == "http://bare:1" and "SonicModelError" in excluded["error"]
    assert list(batch.journal.meta()["excluded_hosts"]) == ["http://bare:1"]


def test_when_no_host_can_run_the_workflow_every_job_is_dead_with_each_hosts_reason(inputs):
    a, b = MemHost("http://a:1"), MemHost("http://b:1")
    a.model_missing = b.model_missing = True
    code, jobs = run(make_batch(inputs, [a, b], [{"id": f"c{i}"} for i in range(5)]))
    assert code == 1 and all(j.state == "dead" and j.error_kind == "host_config" for j in jobs.values())
    for job in jobs.values():
        assert job.error.startswith("no host can run it: ")
        for host in ("http://a:1", "http://b:1"):
            assert (
                f"{host}: host error in SONIC_ModelLoader (node 3): SonicModelError: sonic weights"
                in job.error
            )
    assert len(a.executions) + len(b.executions) <= 4  # nothing beyond what was in flight (2 per host)


# ---------------------------------------------------------------------- rows dead before any dispatch
def test_rows_dead_at_load_get_one_job_event_and_none_again_on_resume(inputs):
    host = MemHost("http://a:1")
    events = []
    rows = [{"id": "ok"}, {"id": "typo", "sed": 3}, {"id": "gone", "image": "/nope/face.png"}]
    batch = make_batch(inputs, [host], rows, sinks=[events.append])
    code, _ = run(batch)
    dead = [e for e in events if e["event"] == "job" and e["state"] == "dead"]
    assert code == 1 and sorted(e["job_id"] for e in dead) == ["gone", "typo"]
    assert all(e["attempt"] == 0 and e["host"] is None and e["error"] for e in dead)
    batch.journal.close()
    again_events = []
    again = Batch(
        BatchConfig(**{**batch.config.__dict__, "resume": True}),
        sinks=[again_events.append],
        client_factory=lambda spec: host,
    )
    again.run()
    assert [e for e in again_events if e["event"] == "job"] == []


def test_dead_rows_of_a_batch_killed_before_it_announced_them_are_announced_on_resume(inputs):
    host = MemHost("http://a:1")
    batch = make_batch(inputs, [host], [{"id": "ok"}, {"id": "typo", "sed": 3}])  # opened, never run
    batch.journal.close()
    events = []
    again = Batch(
        BatchConfig(**{**batch.config.__dict__, "resume": True}),
        sinks=[events.append],
        client_factory=lambda s: host,
    )
    again.run()
    assert [e["job_id"] for e in events if e["event"] == "job" and e["state"] == "dead"] == ["typo"]


# ---------------------------------------------------------------------- host names
def test_events_name_the_host_while_the_journal_keeps_its_safe_url(inputs):
    host = MemHost("http://10.0.0.5:8188")
    events = []
    specs = [HostSpec(url=host.url, name="gpu1")]
    batch = make_batch(inputs, [host], [{"id": "x"}], sinks=[events.append], specs=specs)
    code, jobs = run(batch)
    assert code == 0 and jobs["x"].host == "http://10.0.0.5:8188"
    job_events = [e for e in events if e["event"] in ("job", "progress") and e.get("host")]
    assert job_events and all(e["host_name"] == "gpu1" for e in job_events)
    assert batch.journal.meta()["host_names"] == {"http://10.0.0.5:8188": "gpu1"}


# ---------------------------------------------------------------------- resume and the given hosts
def killed_on(inputs, old: MemHost, rows: list[dict]) -> BatchConfig:
    """A journal whose jobs were all submitted to `old` (prompt ids ...0001, ...0002) when the runner died."""
    batch = make_batch(inputs, [old], rows)
    for job in batch.jobs.values():
        batch.journal.transition(job, "uploading", host=old.url)
        batch.journal.start_attempt(job, old.url, f"00000000-0000-4000-8000-{job.row:012d}", "cid", None)
    batch.journal.close()
    return batch.config


def test_resume_gives_a_journal_host_its_headers_even_when_spelled_differently(inputs):
    host = MemHost("http://gpu:80")
    cfg = killed_on(inputs, host, [{"id": "x"}])
    host.prompts["00000000-0000-4000-8000-000000000001"] = {"state": "running", "outcome": "ok"}
    given = HostSpec(url="http://GPU/", headers={"Authorization": "Bearer t0k"}, name="gpu1")
    made = []
    again = Batch(
        BatchConfig(**{**cfg.__dict__, "resume": True, "hosts": [given]}),
        client_factory=lambda spec: made.append(spec) or host,
    )
    again.open()
    code = again.run()
    assert code == 0 and again.jobs["x"].attempts == 1 and len(host.submitted_prompts) == 0
    assert made and all(spec.headers == {"Authorization": "Bearer t0k"} for spec in made)


def test_resume_without_a_journal_host_says_so_once_and_fails_its_jobs_over_without_running_twice(inputs):
    gone, spare = MemHost("http://gone:1"), MemHost("http://spare:1")
    cfg = killed_on(inputs, gone, [{"id": "x"}, {"id": "y"}])
    gone.down = True  # unreachable without the headers it is no longer given
    events = []
    again = Batch(
        BatchConfig(**{**cfg.__dict__, "resume": True, "hosts": [HostSpec(url=spare.url)]}),
        sinks=[events.append],
        client_factory=lambda spec: {gone.url: gone, spare.url: spare}[spec.safe_url],
    )
    again.open()
    code = again.run()
    notes = [e for e in events if e["event"] == "host" and e["host"] == "http://gone:1"]
    assert (
        len(notes) == 1
        and "not among the given hosts" in notes[0]["error"]
        and "2 in-flight" in notes[0]["error"]
    )
    assert code == 0 and all(j.host == "http://spare:1" and j.attempts == 2 for j in again.jobs.values())
    for job_id in ("x", "y"):
        assert [a["state"] for a in make_journal_attempts(inputs, job_id)] == ["abandoned", "done"]


# ---------------------------------------------------------------------- idle hosts are health-checked
def test_a_dead_idle_host_is_never_chosen(inputs):
    dead, up = MemHost("http://dead:1"), MemHost("http://up:1")
    dead.down = True
    one_try = RetryPolicy(max_attempts=1, backoff_base=0.01, backoff_cap=0.05)
    events = []
    code, jobs = run(
        make_batch(
            inputs, [dead, up], [{"id": f"c{i}"} for i in range(4)], policy=one_try, sinks=[events.append]
        )
    )
    assert code == 0 and all(j.host == "http://up:1" and j.attempts == 1 for j in jobs.values())
    assert dead.uploads == 0
    assert any(e["event"] == "host" and e["host"] == "http://dead:1" and not e["healthy"] for e in events)


def test_an_idle_host_that_comes_back_gets_work_again(inputs):
    late, busy = MemHost("http://late:1"), MemHost("http://busy:1", run_seconds=0.15)
    late.down = True
    threading.Timer(0.3, lambda: setattr(late, "down", False)).start()
    one_try = RetryPolicy(max_attempts=1, backoff_base=0.01, backoff_cap=0.05)
    batch = make_batch(
        inputs,
        [late, busy],
        [{"id": f"c{i}"} for i in range(8)],
        policy=one_try,
        inflight=1,
        health_backoff_base=0.05,
    )
    code, jobs = run(batch)
    assert code == 0 and all(j.attempts == 1 for j in jobs.values())
    assert late.executions and busy.executions  # the host that came back took a share of the work


# ---------------------------------------------------------------------- attempts abandoned by an earlier run
ABANDONED = "00000000-0000-4000-8000-00000000abcd"


def abandoned_on(inputs, old: MemHost, spare: MemHost) -> BatchConfig:
    """A journal whose job x was moved away from `old` (attempt 1 abandoned: `old` was unreachable
    for the failover grace) just before the runner was killed."""
    batch = make_batch(inputs, [old, spare], [{"id": "x"}])
    job = batch.jobs["x"]
    batch.journal.transition(job, "uploading", host=old.url)
    batch.journal.start_attempt(job, old.url, ABANDONED, "cid", job.resolution)
    batch.journal.transition(
        job, "failed", attempt_state="abandoned", error="host unreachable for 0.3 s", error_kind="connection"
    )
    batch.journal.close()
    return BatchConfig(**{**batch.config.__dict__, "resume": True})


def resume(cfg: BatchConfig, hosts: list[MemHost]) -> Batch:
    by_url = {h.url: h for h in hosts}
    again = Batch(cfg, client_factory=lambda spec: by_url[spec.safe_url])
    again.open()
    return again


def test_resume_deletes_an_abandoned_attempt_still_queued_on_its_host(inputs):
    old, spare = MemHost("http://a:1"), MemHost("http://b:1")
    cfg = abandoned_on(inputs, old, spare)
    old.prompts[ABANDONED] = {"state": "pending", "outcome": "ok"}  # still waiting in a's queue
    batch = resume(cfg, [old, spare])
    code, jobs = run(batch)
    assert code == 0 and jobs["x"].state == "done" and jobs["x"].attempts == 2
    assert ABANDONED not in old.prompts  # deleted from the queue: it can never run there
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["cancelled", "done"]
    assert len(old.executions) + len(spare.executions) == 1


def test_resume_interrupts_an_abandoned_attempt_still_running_on_its_host(inputs):
    old, spare = MemHost("http://a:1"), MemHost("http://b:1")
    cfg = abandoned_on(inputs, old, spare)
    old.prompts[ABANDONED] = {"state": "running", "outcome": "ok"}
    code, jobs = run(resume(cfg, [old, spare]))
    assert code == 0 and jobs["x"].state == "done" and jobs["x"].attempts == 2
    assert old.prompts[ABANDONED]["outcome"] == "interrupted"
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["cancelled", "done"]


def test_resume_cancels_on_an_abandoning_host_once_it_answers_again(inputs):
    old, spare = MemHost("http://a:1"), MemHost("http://b:1", run_seconds=1.0)
    cfg = abandoned_on(inputs, old, spare)
    old.prompts[ABANDONED] = {"state": "pending", "outcome": "ok"}
    old.down = True  # unreachable when the resumed run starts, back while x runs on b
    threading.Timer(0.3, lambda: setattr(old, "down", False)).start()
    cfg.health_backoff_base = 0.05
    code, jobs = run(resume(cfg, [old, spare]))
    assert code == 0 and jobs["x"].host == "http://b:1" and jobs["x"].attempts == 2
    assert ABANDONED not in old.prompts
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["cancelled", "done"]


def test_a_finished_batch_still_settles_an_abandoned_attempt_before_it_returns(inputs):
    old, spare = MemHost("http://a:1"), MemHost("http://b:1")
    cfg = abandoned_on(inputs, old, spare)
    old.prompts[ABANDONED] = {"state": "pending", "outcome": "ok"}
    old.down = True  # down for the whole resumed run: x is done on b, the old attempt still waits on a
    assert run(resume(cfg, [old, spare]))[0] == 0 and ABANDONED in old.prompts
    old.down = False
    assert resume(BatchConfig(**cfg.__dict__), [old, spare]).run() == 0  # nothing left to do but that
    assert ABANDONED not in old.prompts
    assert [a["state"] for a in make_journal_attempts(inputs, "x")] == ["cancelled", "done"]


def test_an_abandoned_attempt_that_finished_anyway_is_a_counted_duplicate(inputs):
    from comfyui_sonic.runner.report import build_report, render_table

    old, spare = MemHost("http://a:1"), MemHost("http://b:1")
    cfg = abandoned_on(inputs, old, spare)
    finished = {
        "outputs": {"9": {"images": [{"filename": "f.wav", "subfolder": "", "type": "output"}]}},
        "status": {"status_str": "success", "completed": True, "messages": []},
    }
    old.prompts[ABANDONED] = {"state": "done", "outcome": "ok", "history": finished}
    batch = resume(cfg, [old, spare])
    code, jobs = run(batch)
    assert code == 0 and jobs["x"].state == "done"
    first, second = make_journal_attempts(inputs, "x")
    assert (first["state"], first["error_kind"], second["state"]) == ("done_duplicate", "duplicate", "done")
    assert "ran twice" in first["error"]
    report = build_report(
        list(jobs.values()), 0.0, 1.0, attempts=batch.journal.attempts(), host_names=batch.host_names
    )
    assert report["summary"]["duplicates"] == 1 and report["summary"]["attempts_recorded"] == 2
    assert "duplicates: 1" in render_table(report)


def test_a_refusal_naming_a_lost_upload_uploads_again_and_retries_once_at_no_cost(inputs):
    host = MemHost("http://a:1", script=["stale"])
    one_try = RetryPolicy(max_attempts=1, backoff_base=0.01, backoff_cap=0.05)
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}], policy=one_try))
    assert code == 0 and jobs["x"].state == "done" and jobs["x"].attempts == 2
    assert host.forgotten == 1 and host.uploads == 4  # image and audio sent again
    assert [(a["state"], a["error_kind"]) for a in make_journal_attempts(inputs, "x")] == [
        ("failed", "stale_upload"),
        ("done", None),
    ]


def test_a_lost_upload_refused_again_after_a_fresh_upload_is_a_real_validation_error(inputs):
    host = MemHost("http://a:1", script=["stale", "stale"])
    code, jobs = run(make_batch(inputs, [host], [{"id": "x"}]))
    assert code == 1 and jobs["x"].state == "dead" and jobs["x"].error_kind == "validation"
    assert jobs["x"].attempts == 2 and "Invalid image file" in jobs["x"].error


# ---------------------------------------------------------------------- runner bugs
class BuggyHost(MemHost):
    """A host whose client trips over a runner bug (an unexpected KeyError) while reading outputs."""

    def output_files(self, history_entry: dict) -> list[dict]:
        raise KeyError("outputs")


def test_a_runner_bug_stops_the_batch_logs_its_traceback_and_leaves_the_job_retryable(inputs):
    from comfyui_sonic.runner.batch import EXIT_RUNNER_BUG

    buggy = BuggyHost("http://a:1")
    batch = make_batch(inputs, [buggy], [{"id": f"c{i}"} for i in range(4)], inflight=1)
    code, jobs = run(batch)
    assert code == EXIT_RUNNER_BUG
    log = inputs["dir"] / "out" / "journal.runner-errors.log"
    assert batch.bug is not None and str(log) in batch.bug and "--resume" in batch.bug
    assert "Traceback" in log.read_text() and "KeyError: 'outputs'" in log.read_text()
    assert len(buggy.submitted_prompts) == 1  # no new work after the bug
    assert not any(j.state == "dead" for j in jobs.values())  # never the job's fault
    batch.close()
    fixed = MemHost("http://a:1")
    fixed.prompts = buggy.prompts  # the same host, now with a working client: the run is fetched, not redone
    code, jobs = run(resume(BatchConfig(**{**batch.config.__dict__, "resume": True}), [fixed]))
    assert code == 0 and all(j.state == "done" for j in jobs.values())
    assert jobs["c0"].attempts == 1 and len(fixed.submitted_prompts) == 3


# ---------------------------------------------------------------------- no host can work
def test_a_batch_whose_hosts_are_all_down_gives_up_with_every_job_still_queued(inputs):
    from comfyui_sonic.runner.batch import EXIT_NO_HOST

    a, b = MemHost("http://a:1"), MemHost("http://b:1")
    a.down = b.down = True
    events = []
    batch = make_batch(
        inputs,
        [a, b],
        [{"id": f"c{i}"} for i in range(3)],
        sinks=[events.append],
        give_up_after=0.6,
        health_backoff_base=0.05,
        batch_event_interval=0.05,
    )
    started = time.monotonic()
    code, jobs = run(batch)
    assert code == EXIT_NO_HOST and time.monotonic() - started < 5
    assert {j.state for j in jobs.values()} == {"queued"}
    assert sorted(batch.gave_up) == ["http://a:1: http://a:1: connection refused"] + [
        "http://b:1: http://b:1: connection refused"
    ]
    waiting = [e for e in events if e["event"] == "batch" and "give_up_at" in e]
    assert waiting and all(e["give_up_at"] - e["no_host_since"] == pytest.approx(0.6) for e in waiting)
    assert events[-2]["event"] == "gave_up" and len(events[-2]["hosts"]) == 2
    batch.close()
    a.down = b.down = False  # the fleet is back: --resume finishes the batch
    code, jobs = run(resume(BatchConfig(**{**batch.config.__dict__, "resume": True}), [a, b]))
    assert code == 0 and all(j.state == "done" and j.attempts == 1 for j in jobs.values())


def test_a_fleet_down_for_less_than_give_up_after_keeps_waiting(inputs):
    a = MemHost("http://a:1")
    a.down = True
    threading.Timer(0.4, lambda: setattr(a, "down", False)).start()
    batch = make_batch(inputs, [a], [{"id": "x"}], give_up_after=5.0, health_backoff_base=0.05)
    code, jobs = run(batch)
    assert code == 0 and batch.gave_up is None and jobs["x"].state == "done"


# ---------------------------------------------------------------------- unsent attempts, exclusions
class NoUploadHost(MemHost):
    """Refuses every upload with a 5xx: no attempt ever reaches POST /prompt."""

    def upload(self, path: Path, subfolder: str = "sonic") -> str:
        raise TransientHostError(f"{self.url}/upload/image: HTTP 503", kind="http_5xx")


def test_failed_preparations_are_attempts_and_count_across_a_resume(inputs):
    host = NoUploadHost("http://a:1")
    two_tries = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.05)
    batch = make_batch(inputs, [host], [{"id": "x"}], policy=two_tries, health_backoff_base=0.01)
    job = batch.jobs["x"]
    batch.journal.transition(job, "uploading", host=host.url)
    batch.journal.record_unsent_attempt(job, host.url, "HTTP 503", "http_5xx")
    batch.journal.transition(job, "failed", attempt_state="failed", error="HTTP 503", error_kind="http_5xx")
    batch.close()  # killed after one failed upload
    code, jobs = run(resume(BatchConfig(**{**batch.config.__dict__, "resume": True}), [host]))
    # one more try is all that is left of the budget after the resume
    assert code == 1 and jobs["x"].state == "dead" and jobs["x"].attempts == 2
    attempts = make_journal_attempts(inputs, "x")
    assert [(a["prompt_id"], a["state"], a["host"]) for a in attempts] == [
        ("", "failed", "http://a:1"),
        ("", "dead", "http://a:1"),
    ]
    assert "HTTP 503" in attempts[1]["error"] and host.submitted_prompts == []


def excluded_before(inputs, bare: MemHost, full: MemHost) -> BatchConfig:
    """A journal whose run had excluded `bare` (no Sonic weights) when it was killed, with job x queued."""
    batch = make_batch(inputs, [bare, full], [{"id": "x"}, {"id": "y"}])
    batch.journal.set_meta({"excluded_hosts": {bare.url: "SonicModelError: sonic weights not found"}})
    batch.close()
    return BatchConfig(**{**batch.config.__dict__, "resume": True})


def test_a_host_excluded_for_missing_weights_stays_excluded_after_resume(inputs):
    bare, full = MemHost("http://bare:1"), MemHost("http://full:1")
    bare.model_missing = True
    cfg = excluded_before(inputs, bare, full)
    batch = resume(cfg, [bare, full])
    code, jobs = run(batch)
    assert code == 0 and all(j.host == "http://full:1" and j.attempts == 1 for j in jobs.values())
    assert bare.submitted_prompts == [] and bare.uploads == 0
    assert list(batch.journal.meta()["excluded_hosts"]) == ["http://bare:1"]


def test_retry_excluded_tries_such_a_host_again(inputs):
    bare, full = MemHost("http://bare:1"), MemHost("http://full:1")
    cfg = excluded_before(inputs, bare, full)  # its weights were installed since
    code, jobs = run(resume(BatchConfig(**{**cfg.__dict__, "retry_excluded": True}), [bare, full]))
    assert code == 0 and bare.executions


def test_a_fleet_that_dies_mid_batch_gives_up_with_the_failed_jobs_queued_again(inputs):
    from comfyui_sonic.runner.batch import EXIT_NO_HOST

    a = MemHost("http://a:1", script=["ok", "die"])
    batch = make_batch(
        inputs,
        [a],
        [{"id": f"c{i}"} for i in range(4)],
        inflight=1,
        give_up_after=0.5,
        health_backoff_base=0.05,
    )
    code, jobs = run(batch)
    assert code == EXIT_NO_HOST and jobs["c0"].state == "done"
    # c1 died with its host (its attempt abandoned), c2 and c3 never started: all wait for --resume
    assert [jobs[f"c{i}"].state for i in (1, 2, 3)] == ["queued"] * 3
    assert [a["state"] for a in make_journal_attempts(inputs, "c1")] == ["abandoned"]
