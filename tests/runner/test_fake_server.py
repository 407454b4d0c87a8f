"""The fake ComfyUI behaves like ComfyUI 0.3.6x where the runner depends on it (raw HTTP + websocket)."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid

import pytest
import requests
import websocket

try:
    from tests.fake_comfy import FakeComfy, FakeComfyProcess
except ImportError:  # the repo root is not on sys.path: tests/ is a package, use its sibling
    from ..fake_comfy import FakeComfy, FakeComfyProcess

pytestmark = pytest.mark.timeout(60)


def FakeHost(**options) -> FakeComfy:
    """The fake with its fixed stand-in node schemas, so protocol tests do not move with the nodes."""
    return FakeComfy(pack_nodes=False, **options)


def graph(prefix: str = "sonic/job", resolution: int = 512) -> dict:
    """The smallest Sonic-shaped graph (no file loaders, so nothing needs uploading)."""
    return {
        "4": {
            "class_type": "SONIC_PreData",
            "inputs": {
                "image": "x",
                "audio": "y",
                "duration": 0.0,
                "min_resolution": resolution,
                "expand_ratio": 0.5,
            },
        },
        "6": {
            "class_type": "VideoEncode",
            "inputs": {"images": ["4", 0], "fps": 25.0, "crf": 19, "filename_prefix": prefix},
        },
    }


def post_prompt(url: str, prompt: dict, client_id: str = "c", **extra) -> requests.Response:
    body = {"prompt": prompt, "client_id": client_id, "prompt_id": str(uuid.uuid4()), **extra}
    return requests.post(url + "/prompt", json=body, timeout=5)


def history(url: str, prompt_id: str) -> dict:
    return requests.get(f"{url}/history/{prompt_id}", timeout=5).json()


def until_idle(url: str, limit: float = 10) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        q = requests.get(url + "/queue", timeout=5).json()
        if not q["queue_running"] and not q["queue_pending"]:
            return
        time.sleep(0.02)
    raise AssertionError("fake ComfyUI never went idle")


def messages(ws: websocket.WebSocket, until, limit: float = 10) -> list[dict]:
    """JSON messages until until(msg) is true (binary preview frames skipped)."""
    got = []
    ws.settimeout(limit)
    while True:
        raw = ws.recv()
        if isinstance(raw, bytes):
            continue
        msg = json.loads(raw)
        got.append(msg)
        if until(msg):
            return got


def is_end(prompt_id: str):
    return lambda m: (
        m["type"] == "executing" and m["data"].get("node") is None and m["data"].get("prompt_id") == prompt_id
    )


@pytest.fixture
def srv():
    with FakeHost(run_seconds=0.05) as server:
        yield server


def test_every_route_also_answers_under_api(srv):
    for path in ("/system_stats", "/object_info", "/queue", "/history", "/prompt"):
        assert requests.get(srv.url + path, timeout=5).status_code == 200
        assert requests.get(srv.url + "/api" + path, timeout=5).status_code == 200


def test_message_order_and_history_written_after_execution_success():
    with FakeHost(run_seconds=0.1, history_lag=0.8) as server:
        ws = websocket.create_connection(server.ws_url("c"))
        assert json.loads(ws.recv())["type"] == "status"
        pid = post_prompt(server.url, graph()).json()["prompt_id"]
        got = messages(ws, lambda m: m["type"] == "execution_success")
        assert history(server.url, pid) == {}  # execution_success can come before history exists
        got += messages(ws, is_end(pid))
        assert pid in history(server.url, pid)  # by the end signal it is written
        ws.close()
    ours = [m["type"] for m in got if m["data"].get("prompt_id") == pid]
    assert ours[:2] == ["execution_start", "execution_cached"]
    assert ours.index("progress") < ours.index("executed") < ours.index("execution_success") < len(ours) - 1
    assert ours[-1] == "executing"


def test_queue_is_a_heap_on_number_and_front_jumps_ahead():
    with FakeHost(run_seconds=0.4) as server:
        first = post_prompt(server.url, graph("a")).json()
        back = post_prompt(server.url, graph("b")).json()
        front = post_prompt(server.url, graph("c"), front=True).json()
        assert front["number"] < 0 < back["number"]
        until_idle(server.url)
        assert server.executions == [first["prompt_id"], front["prompt_id"], back["prompt_id"]]


def test_history_is_empty_until_done_and_for_unknown_ids(srv):
    pid = post_prompt(srv.url, graph()).json()["prompt_id"]
    assert history(srv.url, str(uuid.uuid4())) == {}
    until_idle(srv.url)
    entry = history(srv.url, pid)[pid]
    assert entry["status"] == {**entry["status"], "status_str": "success", "completed": True}
    assert entry["outputs"]["6"] == {
        "images": [{"filename": "job_00001_.mp4", "subfolder": "sonic", "type": "output"}],
        "animated": [True],
        "text": ["sonic/job_00001_.mp4: 8 frames 64x64, with audio"],  # VideoEncode's summary line
    }


def test_the_output_is_a_real_h264_aac_mp4(srv):
    import av

    post_prompt(srv.url, graph())
    until_idle(srv.url)
    data = requests.get(
        srv.url + "/view", params={"filename": "job_00001_.mp4", "subfolder": "sonic"}, timeout=5
    )
    with av.open(io.BytesIO(data.content)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_messages_for_a_disconnected_client_are_dropped_and_a_reconnect_gets_executing_without_prompt_id():
    with FakeHost(run_seconds=1.2, progress_steps=6) as server:
        pid = post_prompt(server.url, graph(), client_id="late").json()["prompt_id"]
        time.sleep(0.2)  # execution_start etc. went nowhere
        ws = websocket.create_connection(server.ws_url("late"))
        got = messages(ws, is_end(pid))
        ws.close()
    assert got[0]["type"] == "status"
    assert got[1] == {"type": "executing", "data": {"node": "6"}}  # the running node, no prompt_id
    assert "execution_start" not in [m["type"] for m in got]


def test_validation_errors_look_like_comfyui(srv):
    no_output = {"4": graph()["4"]}
    r = post_prompt(srv.url, no_output)
    assert r.status_code == 400 and r.json()["error"]["type"] == "prompt_no_outputs"
    missing = graph()
    del missing["4"]["inputs"]["min_resolution"]
    r = post_prompt(srv.url, missing)
    assert r.status_code == 400
    assert r.json()["node_errors"]["4"]["errors"][0]["type"] == "required_input_missing"
    r = requests.post(
        srv.url + "/prompt", json={"prompt": graph(), "prompt_id": "job-1-attempt-1"}, timeout=5
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_prompt_id"


def test_lax_prompt_ids_like_0_3_6x():
    with FakeHost(strict_prompt_id=False) as server:
        r = requests.post(server.url + "/prompt", json={"prompt": graph(), "prompt_id": "job-1"}, timeout=5)
        assert r.json()["prompt_id"] == "job-1"


def test_upload_rejects_paths_outside_the_input_folder(srv):
    r = requests.post(
        srv.url + "/upload/image",
        files={"image": ("x.png", b"x")},
        data={"type": "input", "subfolder": "../../etc"},
        timeout=5,
    )
    assert r.status_code == 400


def test_interrupt_only_touches_the_running_prompt():
    with FakeHost(run_seconds=0.5) as server:
        running = post_prompt(server.url, graph("a")).json()["prompt_id"]
        queued = post_prompt(server.url, graph("b")).json()["prompt_id"]
        time.sleep(0.1)
        requests.post(server.url + "/interrupt", json={"prompt_id": queued}, timeout=5)
        requests.post(server.url + "/interrupt", json={"prompt_id": running}, timeout=5)
        until_idle(server.url)
        assert history(server.url, running)[running]["status"]["status_str"] == "error"
        assert history(server.url, queued)[queued]["status"]["status_str"] == "success"


def test_restart_loses_queue_and_history_but_not_files_or_probes(srv):
    pid = post_prompt(srv.url, graph()).json()["prompt_id"]
    until_idle(srv.url)
    srv.restart()
    assert history(srv.url, pid) == {}
    assert srv.executions == [pid]
    assert (srv.output_dir / "sonic" / "job_00001_.mp4").exists()
    post_prompt(srv.url, graph())
    until_idle(srv.url)
    assert (srv.output_dir / "sonic" / "job_00002_.mp4").exists()  # the counter continues from the files


def test_http_500_fault_hits_only_the_named_route(srv):
    srv.set_faults(http_500={"/history": 2})
    assert requests.get(srv.url + "/queue", timeout=5).status_code == 200
    assert requests.get(srv.url + "/history/x", timeout=5).status_code == 500
    assert requests.get(srv.url + "/api/history/x", timeout=5).status_code == 500
    assert requests.get(srv.url + "/history/x", timeout=5).status_code == 200


def test_subprocess_host_dies_mid_job_and_comes_back_empty(tmp_path):
    host = FakeComfyProcess(tmp_path / "h", run_seconds=0.4, stand_in_nodes=True).start()
    try:
        host.set_faults(die_mid_job=1)
        pid = post_prompt(host.url, graph()).json()["prompt_id"]
        host.proc.wait(10)
        assert host.proc.returncode == 17
        assert host.executions() == [pid]
        host.start()
        assert history(host.url, pid) == {}
        assert host.state()["executions"] == [pid]
    finally:
        host.kill()


def test_object_info_describes_the_packs_own_nodes(monkeypatch):
    import comfyui_sonic

    catalog = sys.modules[FakeComfy.__module__.rsplit(".", 1)[0] + ".catalog"]

    class SONIC_PreData:  # a pack node as ComfyUI V1 declares it
        CATEGORY = "Sonic"
        RETURN_TYPES = ("SONIC_DATA",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {
                "required": {"image": ("IMAGE", {"tooltip": "portrait"}), "fps": ("FLOAT", {"default": 25.0})}
            }

    monkeypatch.setitem(comfyui_sonic.NODE_CLASS_MAPPINGS, "SONIC_PreData", SONIC_PreData)
    catalog._pack_nodes_once.cache_clear()
    try:
        with FakeComfy() as server:
            info = requests.get(server.url + "/object_info/SONIC_PreData", timeout=5).json()["SONIC_PreData"]
            refused = post_prompt(server.url, graph())  # graph() lacks the real node's "fps"
    finally:
        catalog._pack_nodes_once.cache_clear()
    assert info["input"]["required"]["fps"] == ["FLOAT", {"default": 25.0}]
    assert info["category"] == "Sonic" and info["output"] == ["SONIC_DATA"]
    assert refused.status_code == 400
    assert refused.json()["node_errors"]["4"]["errors"][0]["details"] == "fps"


def test_job_clock_times_a_job_by_tier_length_and_resolution():
    try:
        from tests.fake_comfy.timing import JobClock, describe
    except ImportError:
        from ..fake_comfy.timing import JobClock, describe

    clock = JobClock(["*=fixed:40", "hq=fixed:90+oom:1"], scale=0.01)
    fast = graph("sonic/sonic_fast")
    fast["4"]["inputs"]["duration"] = 5.0
    assert describe(fast) == ("fast", 512, 5.0)
    assert clock.plan(fast) == (pytest.approx(0.2), False)  # 40 s per 10 s clip, 5 s clip, scale 0.01
    # hq at 768 always runs out of memory here, half-way (0.45 s of 0.9 s)
    assert clock.plan(graph("sonic/sonic_hq", resolution=768)) == (pytest.approx(0.45), True)
    # an hq job moved down to 512 after an OOM runs faster by the pixel count
    seconds, _ = clock.plan(graph("sonic/sonic_hq", resolution=512))
    assert seconds == pytest.approx(0.45 * (512 / 768) ** 2)
    assert clock.plan(fast, oom_rate=1.0)[1] is True


def test_job_times_and_oom_rate_on_the_server():
    try:
        from tests.fake_comfy.timing import JobClock
    except ImportError:
        from ..fake_comfy.timing import JobClock

    with FakeHost(job_times=JobClock(["*=fixed:30"], scale=0.01)) as server:
        pids = [
            post_prompt(server.url, graph(f"sonic/lite_balanced{i}")).json()["prompt_id"] for i in range(2)
        ]
        until_idle(server.url)
        assert all(history(server.url, p)[p]["status"]["status_str"] == "success" for p in pids)
        stats = requests.get(server.url + "/_fake/stats", timeout=5).json()
        assert stats["executions"] == 2 and stats["busy_seconds"] >= 0.6  # 2 x 0.3 s at least
        requests.post(server.url + "/_fake/faults", json={"oom_rate": 1.0}, timeout=5)
        pid = post_prompt(server.url, graph()).json()["prompt_id"]
        until_idle(server.url)
        status = history(server.url, pid)[pid]["status"]
        error = next(m for m in status["messages"] if m[0] == "execution_error")[1]
        assert status["status_str"] == "error" and error["exception_type"] == "torch.OutOfMemoryError"
