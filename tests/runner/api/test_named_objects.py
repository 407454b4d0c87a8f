"""`POST /v1/jobs` with a JSON body naming objects already in the store (local folder or S3)."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner.api.app import create_app
from comfyui_sonic.runner.storage import open_store
from fastapi.testclient import TestClient

from tests.runner.api.test_serve import FACE, SPEECH, _empty_but, _settings, _wait_done, _wav


def _upload(settings, objects: dict[str, bytes]) -> None:
    store = open_store(settings.storage, s3_endpoint=settings.s3_endpoint)
    for key, data in objects.items():
        store.put_bytes(key, data)


def test_a_job_names_its_uploaded_image_and_audio(tmp_path):
    settings = _settings(tmp_path)
    _upload(settings, {"uploads/face.jpg": FACE, "uploads/speech.wav": SPEECH})
    with TestClient(create_app(settings)) as client:
        body = {
            "image": "uploads/face.jpg",
            "audio": "uploads/speech.wav",
            "tier": "fast",
            "priority": "P0",
            "seed": 7,
            "duration": 9,
            "inputs": {"Animate.dynamic_scale": 1.1},
        }
        answer = client.post("/v1/jobs", json=body)
        assert answer.status_code == 202, answer.text
        done = _wait_done(client, f"/v1/jobs/{answer.json()['id']}")
        assert done["status"] == "done", done
        assert done["template"] == "sonic_lite_fast" and done["priority"] == "P0"
        assert done["notes"] == ["duration 9 s corrected to 1.200 s from the audio"]
        job = client.app.app.state.store.job(done["id"])
        assert job.spec["params"] == {"seed": 7, "Animate.dynamic_scale": 1.1}
        assert job.spec["sources"] == {"image_key": "uploads/face.jpg", "audio_key": "uploads/speech.wav"}
        assert job.spec["image"] == f"jobs/{done['id']}/inputs/image.jpg"  # the job's own copy


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (
            {"image": "uploads/nope.jpg", "audio": "uploads/speech.wav"},
            422,
            "image",
            "no object 'uploads/nope.jpg'",
        ),
        ({"image": "uploads/face.jpg"}, 422, "audio", "name the object"),
        ({"image": "uploads/text.jpg", "audio": "uploads/speech.wav"}, 422, "image", "not a picture"),
        ({"image": "uploads/face.jpg", "audio": "uploads/face.jpg"}, 422, "audio", "no audio stream"),
        ({"image": "uploads/face.jpg", "audio": "uploads/short.wav"}, 422, "audio", "at least 0.5 s"),
        ({"image": "uploads/big.jpg", "audio": "uploads/speech.wav"}, 413, "image", "at most 1 MB"),
        ({"image": "../etc/passwd", "audio": "uploads/speech.wav"}, 422, "image", "not a plain object key"),
        (
            {"image": "jobs/x/inputs/image.jpg", "audio": "uploads/speech.wav"},
            422,
            "image",
            "a job's own files",
        ),
        ({"image": 5, "audio": "uploads/speech.wav"}, 422, "image", "as a string"),
        (
            {"image": "uploads/face.jpg", "audio": "uploads/speech.wav", "colour": "red"},
            422,
            "colour",
            "unknown field",
        ),
        (
            {"image": "uploads/face.jpg", "audio": "uploads/speech.wav", "inputs": {"Animate.seed": "abc"}},
            422,
            "Animate.seed",
            "not a whole number",
        ),
        (
            {"image": "uploads/face.jpg", "audio": "uploads/speech.wav", "inputs": [1]},
            422,
            "inputs",
            "object",
        ),
        (
            {"image": "uploads/face.jpg", "audio": "uploads/speech.wav", "template": "nope"},
            422,
            "template",
            "unknown",
        ),
        ([1, 2], 422, "body", "JSON object"),
    ],
)
def test_bad_named_objects_are_refused_naming_the_field(tmp_path, body, status, field, words):
    settings = _settings(tmp_path, max_upload_bytes=1024 * 1024)
    uploads = {
        "uploads/face.jpg": FACE,
        "uploads/speech.wav": SPEECH,
        "uploads/text.jpg": b"hello, not a picture",
        "uploads/short.wav": _wav(0.05),
        "uploads/big.jpg": bytes(2 * 1024 * 1024),
    }
    _upload(settings, uploads)
    with TestClient(create_app(settings, start_workers=False)) as client:
        answer = client.post("/v1/jobs", json=body)
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["field"] == field and words in error["message"], error
        assert client.get("/v1/jobs").json() == {"jobs": []}
    assert _empty_but(tmp_path, uploads)


def test_a_body_that_is_not_json_is_refused(tmp_path):
    with TestClient(create_app(_settings(tmp_path), start_workers=False)) as client:
        answer = client.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "body"


def test_named_objects_in_an_s3_bucket(tmp_path, monkeypatch):
    """On a real S3-compatible server (SeaweedFS): the client uploads, then names the keys."""
    from tests.services.seaweedfs import ACCESS_KEY, SECRET_KEY, start_seaweedfs

    seaweed = start_seaweedfs()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        settings = _settings(tmp_path, storage="s3://sonic-probe/named", s3_endpoint=seaweed.endpoint)
        _upload(settings, {"uploads/face.jpg": FACE, "uploads/speech.wav": SPEECH})
        with TestClient(create_app(settings)) as client:
            missing = client.post(
                "/v1/jobs", json={"image": "uploads/gone.jpg", "audio": "uploads/speech.wav"}
            )
            assert (
                missing.status_code == 422 and "s3://sonic-probe/named/" in missing.json()["error"]["message"]
            )
            answer = client.post(
                "/v1/jobs", json={"image": "uploads/face.jpg", "audio": "uploads/speech.wav"}
            )
            assert answer.status_code == 202, answer.text
            done = _wait_done(client, f"/v1/jobs/{answer.json()['id']}")
            assert done["status"] == "done", done
            assert done["outputs"][0]["url"].startswith(seaweed.endpoint)
        store = open_store(settings.storage, s3_endpoint=seaweed.endpoint)
        keys = sorted(k for k, _ in store.keys())
        job_id = done["id"]
        assert keys[:2] == [f"jobs/{job_id}/inputs/audio.wav", f"jobs/{job_id}/inputs/image.jpg"]
        assert keys[-2:] == ["uploads/face.jpg", "uploads/speech.wav"]
    finally:
        seaweed.stop()


def test_a_key_with_its_own_folder_names_only_objects_in_it(tmp_path):
    """A service gives each client a key confined to its folder: no client renders another's uploads."""
    from comfyui_sonic.runner.store.api_keys import ApiKeys

    settings = _settings(tmp_path, auth=True)
    _upload(
        settings,
        {
            "uploads/acme/face.jpg": FACE,
            "uploads/acme/speech.wav": SPEECH,
            "uploads/globex/face.jpg": FACE,
        },
    )
    with TestClient(create_app(settings, start_workers=False)) as client:
        keys = ApiKeys(client.app.app.state.store)
        acme_key, acme = keys.create("acme", objects_prefix="uploads/acme")
        assert acme_key.objects_prefix == "uploads/acme/"  # a folder, so uploads/acme2/ is not inside
        _, anyone = keys.create("operator")

        def post(secret: str, image: str) -> object:
            body = {"image": image, "audio": "uploads/acme/speech.wav"}
            return client.post("/v1/jobs", json=body, headers={"authorization": f"Bearer {secret}"})

        assert post(acme, "uploads/acme/face.jpg").status_code == 202
        refused = post(acme, "uploads/globex/face.jpg")
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["field"] == "image" and "outside this API key's folder uploads/acme/" in error["message"]
        missing = post(acme, "uploads/globex/nope.jpg")  # refused the same way: no hint of what exists
        assert missing.status_code == 403
        assert post(anyone, "uploads/globex/face.jpg").status_code == 202  # a key with no folder


@pytest.mark.parametrize("prefix", ["", "/", "/abs/", "uploads/../x/", "jobs/"])
def test_a_key_folder_must_be_a_plain_folder_of_the_bucket(tmp_path, prefix):
    from comfyui_sonic.runner.store import JobStore
    from comfyui_sonic.runner.store.api_keys import ApiKeys

    with JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}") as store:
        with pytest.raises(ValueError, match="--objects-prefix"):
            ApiKeys(store).create("acme", objects_prefix=prefix)
