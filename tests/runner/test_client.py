"""ComfyClient against the fake ComfyUI: the happy path, and every way a host lets a job down."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from comfyui_sonic.runner.client import ComfyClient, names_missing_upload, safe_url
from comfyui_sonic.runner.host_errors import (
    ExecutionHostError,
    HostAuthError,
    HostOOMError,
    JobInputError,
    JobTimeoutError,
    TransientHostError,
    UploadTooLargeError,
    ValidationHostError,
)

try:
    from tests.fake_comfy import FakeComfy
except ImportError:  # the repo root is not on sys.path: tests/ is a package, use its sibling
    from ..fake_comfy import FakeComfy

pytestmark = pytest.mark.timeout(60)


def FakeHost(**options) -> FakeComfy:
    """The fake with its fixed stand-in node schemas, so protocol tests do not move with the nodes."""
    return FakeComfy(pack_nodes=False, **options)


def sonic_prompt(image: str, audio: str, resolution: int = 512, prefix: str = "sonic/job") -> dict:
    """The API-format graph our workflows use: load, prepare, infer, encode."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}, "_meta": {"title": "Portrait"}},
        "2": {"class_type": "LoadAudio", "inputs": {"audio": audio}, "_meta": {"title": "Speech"}},
        "3": {
            "class_type": "SONIC_ModelLoader",
            "inputs": {"backend": "lite", "checkpoint": "none", "dtype": "auto", "device": "auto"},
        },
        "4": {
            "class_type": "SONIC_PreData",
            "inputs": {
                "image": ["1", 0],
                "audio": ["2", 0],
                "duration": 0.0,
                "min_resolution": resolution,
                "expand_ratio": 0.5,
            },
        },
        "5": {
            "class_type": "SONIC_Inference",
            "inputs": {
                "model": ["3", 0],
                "data": ["4", 0],
                "seed": 1,
                "inference_steps": 25,
                "dynamic_scale": 1.0,
                "motion_scale": 1.0,
                "fps": 25.0,
            },
        },
        "6": {
            "class_type": "VideoEncode",
            "inputs": {
                "images": ["5", 0],
                "audio": ["5", 1],
                "fps": ["5", 2],
                "crf": 19,
                "filename_prefix": prefix,
            },
        },
    }


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    image = tmp_path / "face.png"
    image.write_bytes(b"\x89PNG fake portrait bytes")
    audio = tmp_path / "speech.wav"
    audio.write_bytes(b"RIFF fake speech bytes")
    return image, audio


@pytest.fixture
def srv():
    with FakeHost(run_seconds=0.05) as server:
        yield server


def new_ids() -> tuple[str, str]:
    return str(uuid.uuid4()), uuid.uuid4().hex


def start_job(client: ComfyClient, inputs: tuple[Path, Path], **prompt_options) -> tuple[str, str]:
    image, audio = inputs
    prompt = sonic_prompt(client.upload(image), client.upload(audio), **prompt_options)
    prompt_id, client_id = new_ids()
    client.submit(prompt, prompt_id, client_id)
    return prompt_id, client_id


# ---------------------------------------------------------------- uploads


def test_upload_reuses_identical_bytes_and_renames_different_ones(srv, tmp_path):
    client = ComfyClient(srv.url)
    first = tmp_path / "a" / "face.png"
    other = tmp_path / "b" / "face.png"
    first.parent.mkdir()
    other.parent.mkdir()
    first.write_bytes(b"portrait one")
    other.write_bytes(b"portrait two")

    assert client.upload(first) == "sonic/face.png"
    assert client.upload(other) == "sonic/face (1).png"  # same name, different bytes: ComfyUI renames
    assert client.upload(first) == "sonic/face.png"
    assert len(srv.uploads) == 2  # the repeat never left the client

    fresh = ComfyClient(srv.url)  # a new runner process: the host recognises the bytes
    assert fresh.upload(first) == "sonic/face.png"
    assert srv.uploads[-1]["reused"] is True


def test_a_long_running_client_remembers_only_its_most_recent_files(srv, tmp_path):
    # A fleet worker's inputs are new temp files every job: its caches must not keep them all.
    client = ComfyClient(srv.url, cache_entries=3)
    files = []
    for i in range(5):
        files.append(tmp_path / f"job{i}.wav")
        files[-1].write_bytes(f"speech {i}".encode())
        client.upload(files[-1])
    assert len(client._uploads) == 3 and len(client._digests) == 3
    client.upload(files[4])  # recent: not sent again
    assert len(srv.uploads) == 5
    client.upload(files[0])  # forgotten: sent again (the host recognises the bytes)
    assert len(srv.uploads) == 6 and srv.uploads[-1]["reused"] is True


def test_a_host_restarted_on_fresh_storage_refuses_a_cached_upload_and_the_client_sends_it_again(srv, inputs):
    client = ComfyClient(srv.url)
    image, audio = inputs
    prompt_id, client_id = start_job(client, inputs)
    client.wait(prompt_id, client_id, timeout=20, poll_interval=0.2)
    srv.restart(wipe_inputs=True)  # while the client was idle: it never saw the host go away
    with pytest.raises(ValidationHostError) as err:
        start_job(client, inputs)  # the cache still names files the host no longer has
    assert names_missing_upload(err.value.details) and "Invalid image file" in err.value.message
    before = len(srv.uploads)
    prompt_id, client_id = start_job(client, inputs)  # the refusal emptied the cache: both sent again
    assert len(srv.uploads) == before + 2
    assert (
        client.wait(prompt_id, client_id, timeout=20, poll_interval=0.2)["status"]["status_str"] == "success"
    )


def test_a_host_that_answers_again_after_being_unreachable_gets_its_uploads_again(srv, inputs):
    client = ComfyClient(srv.url)
    image, _ = inputs
    client.upload(image)
    srv.kill()
    with pytest.raises(TransientHostError):
        client.system_stats()
    srv.revive()
    client.system_stats()  # it answers again: it may have restarted with an empty input folder
    client.upload(image)
    assert len(srv.uploads) == 2


def test_only_a_missing_loader_file_counts_as_a_lost_upload():
    lost = {
        "node_errors": {
            "1": {
                "class_type": "LoadAudio",
                "errors": [
                    {
                        "type": "custom_validation_failed",
                        "details": "audio - Invalid audio file: sonic/speech.wav",
                        "extra_info": {"input_name": "audio"},
                    }
                ],
            }
        }
    }
    assert names_missing_upload(lost)
    other = {
        "node_errors": {
            "4": {
                "class_type": "SONIC_PreData",
                "errors": [{"type": "value_smaller_than_min", "extra_info": {"input_name": "duration"}}],
            }
        }
    }
    assert not names_missing_upload(other) and not names_missing_upload({}) and not names_missing_upload("x")


def test_upload_too_large_is_not_retryable(tmp_path):
    big = tmp_path / "speech.wav"
    big.write_bytes(b"x" * 20_000)
    with FakeHost(upload_limit_bytes=4_000) as server:
        with pytest.raises(UploadTooLargeError) as err:
            ComfyClient(server.url).upload(big)
    assert err.value.retryable is False
    assert err.value.kind == "upload_too_large"


def test_upload_of_a_missing_file_names_it(srv, tmp_path):
    with pytest.raises(ValueError, match="nothere.png"):
        ComfyClient(srv.url).upload(tmp_path / "nothere.png")


# ---------------------------------------------------------------- a job from start to finish


def test_submit_wait_and_download_a_real_video(srv, inputs, tmp_path):
    import av

    client = ComfyClient(srv.url)
    prompt_id, client_id = start_job(client, inputs)
    events: list[dict] = []

    entry = client.wait(prompt_id, client_id, timeout=20, on_event=events.append)

    assert entry["status"]["status_str"] == "success"
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["value"] == progress[-1]["max"]
    files = client.output_files(entry)
    assert [(f["filename"], f["subfolder"], f["type"]) for f in files] == [
        ("job_00001_.mp4", "sonic", "output")
    ]
    dest = client.download(files[0], tmp_path / "out" / "row1.mp4")
    assert dest.stat().st_size > 0
    assert not (tmp_path / "out" / "row1.mp4.part").exists()
    with av.open(str(dest)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_identical_resubmission_returns_the_cached_file(srv, inputs):
    client = ComfyClient(srv.url)
    first = client.wait(*start_job(client, inputs), timeout=20)
    second = client.wait(*start_job(client, inputs), timeout=20)
    assert client.output_files(first) == client.output_files(second)
    assert len(srv.outputs_written) == 1  # ComfyUI's cache: no new file for the same graph


def test_video_helper_suite_gifs_key_is_found(inputs):
    with FakeHost(output_key="gifs") as server:
        client = ComfyClient(server.url)
        entry = client.wait(*start_job(client, inputs), timeout=20)
    assert "gifs" in entry["outputs"]["6"] and "images" not in entry["outputs"]["6"]
    assert [f["key"] for f in client.output_files(entry)] == ["gifs"]


def test_output_files_walks_every_ui_key_and_lists_each_file_once():
    entry = {
        "outputs": {
            "9": {
                "images": [{"filename": "a.mp4", "subfolder": "sonic", "type": "output"}],
                "animated": [True],
                "gifs": [
                    {"filename": "a.mp4", "subfolder": "sonic", "type": "output", "format": "video/h264-mp4"}
                ],
            },
            "12": {"audio": [{"filename": "b.flac", "subfolder": "", "type": "output"}], "text": ["hello"]},
            "13": {"videos": {"nested": [{"filename": "c.webm", "type": "temp"}]}},
        }
    }
    files = ComfyClient("http://127.0.0.1:9").output_files(entry)
    assert [(f["filename"], f["subfolder"], f["type"], f["node_id"]) for f in files] == [
        ("a.mp4", "sonic", "output", "9"),
        ("b.flac", "", "output", "12"),
        ("c.webm", "", "temp", "13"),
    ]


def test_download_of_a_missing_file_leaves_nothing_behind(srv, tmp_path):
    dest = tmp_path / "x.mp4"
    with pytest.raises(TransientHostError):
        ComfyClient(srv.url).download({"filename": "nope.mp4", "subfolder": "", "type": "output"}, dest)
    assert not dest.exists() and not (tmp_path / "x.mp4.part").exists()


def test_a_full_disk_here_is_a_local_disk_error_naming_the_folder(srv, inputs, tmp_path, monkeypatch):
    # Neither the job's fault nor the host's: a LocalDiskError (an OSError), never a HostError
    # that would spend one of the job's attempts.
    import errno

    import comfyui_sonic.runner.client as client_module
    from comfyui_sonic.runner.client import LocalDiskError

    client = ComfyClient(srv.url)
    (ref,) = client.output_files(client.wait(*start_job(client, inputs), timeout=20))
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(LocalDiskError, match="cannot write row1.mp4 to .*taken/out on this machine"):
        client.download(ref, tmp_path / "taken" / "out" / "row1.mp4")

    class FullDisk:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, block):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(client_module, "open", FullDisk, raising=False)
    with pytest.raises(LocalDiskError, match=r"No space left on device"):
        client.download(ref, tmp_path / "out" / "row1.mp4")
    assert not (tmp_path / "out" / "row1.mp4").exists()


# ---------------------------------------------------------------- refused before running


def test_missing_input_file_is_a_validation_error_naming_node_and_file(srv):
    client = ComfyClient(srv.url)
    with pytest.raises(ValidationHostError) as err:
        client.submit(sonic_prompt("sonic/never-uploaded.png", "sonic/x.wav"), *new_ids())
    assert err.value.retryable is False
    assert "LoadImage (node 1)" in err.value.message
    assert "never-uploaded.png" in err.value.message
    assert "\n" not in err.value.message


def test_unknown_node_class_is_a_validation_error(srv):
    prompt = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(ValidationHostError, match="NoSuchNode does not exist"):
        ComfyClient(srv.url).submit(prompt, *new_ids())


def test_injected_validation_error(srv, inputs):
    srv.set_faults(validation_error=1)
    client = ComfyClient(srv.url)
    with pytest.raises(ValidationHostError, match=r"SONIC_PreData \(node 4\): min_resolution: '9999' not in"):
        start_job(client, inputs)
    client.wait(*start_job(client, inputs), timeout=20)  # only the next one was refused


def test_server_error_is_transient_and_the_next_call_works(srv, inputs):
    client = ComfyClient(srv.url)
    srv.set_faults(http_500={"/prompt": 1})
    with pytest.raises(TransientHostError) as err:
        start_job(client, inputs)
    assert (err.value.kind, err.value.retryable) == ("http_5xx", True)
    client.wait(*start_job(client, inputs), timeout=20)


def test_unreachable_host_is_transient_and_never_shows_the_password():
    client = ComfyClient("http://operator:hunter2@127.0.0.1:9")
    with pytest.raises(TransientHostError) as err:
        client.system_stats()
    assert err.value.kind == "connection"
    assert "hunter2" not in str(err.value) and "127.0.0.1:9" in str(err.value)
    assert safe_url("https://u:p@gpu1.example:8443/comfy") == "https://gpu1.example:8443/comfy"


# ---------------------------------------------------------------- waiting through trouble


def test_silent_socket_falls_back_to_polling_history(srv, inputs):
    srv.set_faults(silent_socket=True)
    client = ComfyClient(srv.url)
    entry = client.wait(*start_job(client, inputs), timeout=20, poll_interval=0.1)
    assert entry["status"]["status_str"] == "success"


def test_socket_dropped_mid_job_is_reconnected(inputs):
    with FakeHost(run_seconds=0.4, progress_steps=4) as server:
        server.set_faults(drop_socket=1)
        client = ComfyClient(server.url)
        events: list[dict] = []
        entry = client.wait(*start_job(client, inputs), timeout=20, on_event=events.append, poll_interval=5)
        assert entry["status"]["status_str"] == "success"
        assert server.requests["/ws"] >= 2  # it came back


def test_end_signal_before_history_is_written(inputs):
    with FakeHost(history_lag=0.3, end_before_history=True) as server:
        client = ComfyClient(server.url)
        entry = client.wait(*start_job(client, inputs), timeout=20, poll_interval=5)
    assert entry["outputs"]["6"]["images"][0]["filename"].endswith(".mp4")


@pytest.mark.parametrize(
    ("fault", "error_class", "retryable"),
    [
        ({"oom": 1}, HostOOMError, True),
        ({"input_error": 1}, JobInputError, False),
        ({"exec_error": 1}, ExecutionHostError, True),
    ],
)
def test_execution_errors_are_classified(srv, inputs, fault, error_class, retryable):
    srv.set_faults(**fault)
    client = ComfyClient(srv.url)
    with pytest.raises(error_class) as err:
        client.wait(*start_job(client, inputs), timeout=20)
    assert err.value.retryable is retryable
    assert "\n" not in err.value.message


def test_oom_above_a_resolution_names_the_next_tier(srv, inputs):
    srv.set_faults(oom_above=512)
    client = ComfyClient(srv.url)
    with pytest.raises(HostOOMError) as err:
        client.wait(*start_job(client, inputs, resolution=768), timeout=20)
    assert (err.value.resolution, err.value.next_tier) == (768, 512)
    client.wait(*start_job(client, inputs, resolution=512), timeout=20)


def test_a_face_less_portrait_is_an_input_error_with_the_hosts_message(srv, tmp_path):
    client = ComfyClient(srv.url)
    image = tmp_path / "noface.png"
    image.write_bytes(b"a landscape")
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"speech")
    prompt_id, client_id = new_ids()
    client.submit(sonic_prompt(client.upload(image), client.upload(audio)), prompt_id, client_id)
    with pytest.raises(JobInputError, match="no face found"):
        client.wait(prompt_id, client_id, timeout=20)
    with pytest.raises(JobInputError):  # the error stays in history for a later look
        client._result(client.history(prompt_id))


def test_host_restart_mid_job_is_reported_as_restart(inputs):
    with FakeHost(run_seconds=2.0) as server:
        client = ComfyClient(server.url)
        prompt_id, client_id = start_job(client, inputs)
        threading.Timer(0.3, server.restart).start()
        with pytest.raises(TransientHostError) as err:
            client.wait(prompt_id, client_id, timeout=20, poll_interval=0.2)
        assert err.value.kind == "restart"
        assert client.prompt_status(prompt_id) == "unknown"


def test_host_that_dies_and_stays_down(inputs):
    with FakeHost(run_seconds=0.6) as server:
        client = ComfyClient(server.url, timeout=2)
        client.host_down_grace = 0.5
        prompt_id, client_id = start_job(client, inputs)
        server.set_faults(die_mid_job=1)
        with pytest.raises(TransientHostError) as err:
            client.wait(prompt_id, client_id, timeout=20, poll_interval=0.1)
        assert err.value.kind == "connection"
        server.revive()


def test_host_that_crashes_and_comes_back_by_itself(inputs):
    with FakeHost(run_seconds=0.4, auto_revive_after=0.3) as server:
        client = ComfyClient(server.url)
        server.set_faults(die_mid_job=1)
        prompt_id, client_id = start_job(client, inputs)
        with pytest.raises(TransientHostError) as err:
            client.wait(prompt_id, client_id, timeout=20, poll_interval=0.1)
        assert err.value.kind == "restart"
        assert server.executions == [prompt_id]
        client.wait(*start_job(client, inputs), timeout=20)  # the uploads survived the crash


def test_timeout(inputs):
    with FakeHost(run_seconds=3.0) as server:
        client = ComfyClient(server.url)
        prompt_id, client_id = start_job(client, inputs)
        with pytest.raises(JobTimeoutError) as err:
            client.wait(prompt_id, client_id, timeout=0.3, poll_interval=0.1)
        assert err.value.retryable is True
        client.interrupt(prompt_id)


# ---------------------------------------------------------------- queue control


def test_prompt_status_delete_and_interrupt(inputs):
    with FakeHost(run_seconds=1.5) as server:
        client = ComfyClient(server.url)
        running_id, running_client = start_job(client, inputs, prefix="sonic/a")
        queued_id, _ = start_job(client, inputs, prefix="sonic/b")
        never_id, _ = new_ids()
        assert client.prompt_status(queued_id) == "pending"
        assert client.prompt_status(never_id) == "unknown"
        client.delete_queued([queued_id])
        assert client.prompt_status(queued_id) == "unknown"
        client.interrupt(running_id)
        with pytest.raises(TransientHostError) as err:
            client.wait(running_id, running_client, timeout=20)
        assert err.value.kind == "interrupted"
        assert client.prompt_status(running_id) == "done"


def test_job_queued_behind_another_reports_running_then_done(inputs):
    with FakeHost(run_seconds=0.8) as server:
        client = ComfyClient(server.url)
        first = start_job(client, inputs, prefix="sonic/a")
        second = start_job(client, inputs, prefix="sonic/b")
        assert client.prompt_status(first[0]) == "running"
        client.wait(*second, timeout=20)
        assert client.prompt_status(first[0]) == "done"
        assert server.executions == [first[0], second[0]]


# ---------------------------------------------------------------- proxies


def test_custom_headers_reach_every_route(inputs, tmp_path):
    with FakeHost(token="s3cret") as server:
        with pytest.raises(HostAuthError) as err:
            ComfyClient(server.url).system_stats()
        assert "s3cret" not in str(err.value)
        client = ComfyClient(server.url, headers={"Authorization": "Bearer s3cret"})
        entry = client.wait(*start_job(client, inputs), timeout=20)  # upload, prompt, ws, history
        client.download(client.output_files(entry)[0], tmp_path / "o.mp4")


def test_wait_raises_auth_error_when_the_socket_is_refused(inputs):
    with FakeHost(token="s3cret") as server:
        client = ComfyClient(server.url, headers={"Authorization": "Bearer s3cret"})
        prompt_id, client_id = start_job(client, inputs)
        client.headers = {}  # the websocket goes without credentials
        with pytest.raises(HostAuthError):
            client.wait(prompt_id, client_id, timeout=10)


def test_connect_before_submit_sees_every_message_and_skips_previews(inputs):
    with FakeHost(run_seconds=0.2, send_previews=True) as server:
        client = ComfyClient(server.url)
        image, audio = inputs
        prompt = sonic_prompt(client.upload(image), client.upload(audio))
        prompt_id, client_id = new_ids()
        client.connect(client_id)
        client.submit(prompt, prompt_id, client_id)
        events: list[dict] = []
        client.wait(prompt_id, client_id, timeout=20, on_event=events.append)
    assert all(isinstance(e["data"], dict) for e in events)  # binary preview frames never reach the sink
    kinds = [e["type"] for e in events if e["data"].get("prompt_id") == prompt_id]
    assert kinds[:2] == ["execution_start", "execution_cached"]
    assert kinds[-2:] == ["execution_success", "executing"]
    assert "progress" in kinds and "executed" in kinds


def test_a_raising_event_sink_does_not_break_the_job(srv, inputs):
    def sink(event: dict) -> None:
        raise RuntimeError("display crashed")

    client = ComfyClient(srv.url)
    assert client.wait(*start_job(client, inputs), timeout=20, on_event=sink)["status"]["completed"] is True


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate"
)
def test_https_host_with_its_own_certificate(inputs, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    with FakeHost(tls_certfile=cert, tls_keyfile=key) as server:
        assert server.url.startswith("https://")
        with pytest.raises(TransientHostError, match="TLS certificate not accepted"):
            ComfyClient(server.url).system_stats()
        client = ComfyClient(server.url, verify=str(cert))
        prompt_id, client_id = start_job(client, inputs)
        client.connect(client_id)  # wss with the same CA bundle
        assert client.wait(prompt_id, client_id, timeout=20)["status"]["completed"] is True
        insecure = ComfyClient(server.url, verify=False)
        assert insecure.history(prompt_id) is not None
