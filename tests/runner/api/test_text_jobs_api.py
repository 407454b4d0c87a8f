"""`POST /v1/jobs` with the words to speak (``text`` + ``voice``) instead of an audio file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from comfyui_sonic.runner.api.app import create_app
from comfyui_sonic.runner.api.settings import ServeSettings
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[3]
FACE = (ROOT / "demo" / "sonic_example_face.jpg").read_bytes()


def _settings(tmp_path: Path) -> ServeSettings:
    return ServeSettings(
        db_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        storage=str(tmp_path / "objects"),
        work_dir=tmp_path / "work",
        auth=False,
    )


def _face():
    return {"image": ("face.jpg", FACE, "image/jpeg")}


def _wait(client: TestClient, url: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("done", "dead", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job did not finish: {body}")


def test_a_text_job_renders_with_the_text_twin_of_the_template(tmp_path, espeak):
    import av

    with TestClient(create_app(_settings(tmp_path))) as client:
        answer = client.post(
            "/v1/jobs",
            files=_face(),
            data={
                "text": "Good morning! Your order is on its way.",
                "voice": "en-us",
                "tier": "fast",
                "duration": "9",
            },
        )
        assert answer.status_code == 202, answer.text
        done = _wait(client, answer.json()["status_url"])
        assert done["status"] == "done", done
        assert done["template"] == "sonic_lite_text_fast"
        assert done["notes"] == ["duration 9 ignored: a text job lasts as long as its synthesised speech"]
        (output,) = done["outputs"]
        mp4 = client.get(output["url"])
        assert mp4.status_code == 200
    path = tmp_path / "out.mp4"
    path.write_bytes(mp4.content)
    with av.open(str(path)) as container:
        seconds = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
    spoken = espeak.synthesize("Good morning! Your order is on its way.", "en-us", 1.0).duration
    assert seconds == pytest.approx(spoken, abs=0.3)  # the clip lasts as long as the speech


@pytest.mark.parametrize(
    ("files", "data", "field", "message"),
    [
        (_face(), {}, "audio", "or the words to speak as field 'text'"),
        (_face(), {"text": "   "}, "text", "text is empty"),
        (_face(), {"text": "x" * 20_001}, "text", "text is 20,001 characters; at most 20,000"),
        ({**_face(), "audio": ("s.wav", b"RIFF", "audio/wav")}, {"text": "Hi."}, "text", "not both"),
        (_face(), {"text": "Hi.", "voice": "en-us", "nonsense": "1"}, "nonsense", "matches no input"),
    ],
)
def test_bad_text_requests_are_422_naming_the_field(tmp_path, files, data, field, message):
    with TestClient(create_app(_settings(tmp_path), start_workers=False)) as client:
        answer = client.post("/v1/jobs", files=files, data=data)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and message in error["message"]
