"""Object storage: the same behaviour from a local folder and from a real S3 server (SeaweedFS)."""

from __future__ import annotations

import io
import os
import time
import uuid

import pytest
import requests
from botocore.response import StreamingBody
from comfyui_sonic.runner.storage import (
    SINGLE_PUT_BYTES,
    LocalStore,
    S3Store,
    StorageError,
    gc,
    job_key,
    open_store,
)

from tests.services.seaweedfs import start_seaweedfs


@pytest.fixture(scope="module")
def seaweed():
    server = start_seaweedfs()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server = request.getfixturevalue("seaweed")
    # One bucket, a fresh prefix per test (each bucket costs SeaweedFS a set of volumes).
    return S3Store(
        "sonic-probe", prefix=uuid.uuid4().hex, endpoint_url=server.endpoint, client=server.client()
    )


def test_outputs_round_trip_under_deterministic_job_keys(store, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00 ftypisom" + bytes(2000))
    key = job_key("job-7", "outputs", "clip.mp4")
    assert key == "jobs/job-7/outputs/clip.mp4"
    store.put_file(key, video, "video/mp4")
    store.put_file(key, video, "video/mp4")  # a retry writes the same key again: still one object
    assert store.exists(key) and not store.exists(job_key("job-7", "outputs", "other.mp4"))
    assert [k for k, _ in store.keys("jobs/job-7/")] == [key]
    assert store.get_file(key, tmp_path / "back.mp4").read_bytes() == video.read_bytes()
    store.delete(key)
    assert not store.exists(key)


def test_a_file_over_the_single_request_size_round_trips(store, tmp_path):
    # Past SINGLE_PUT_BYTES both ways go multipart / ranged: the bytes come back the same.
    big = tmp_path / "long.mp4"
    big.write_bytes(os.urandom(SINGLE_PUT_BYTES + 300_000))
    store.put_file("jobs/j/outputs/long.mp4", big)
    back = store.get_file("jobs/j/outputs/long.mp4", tmp_path / "dl" / "long.mp4")
    assert back.read_bytes() == big.read_bytes()


def test_reading_a_missing_object_says_so_and_leaves_no_file(store, tmp_path):
    dest = tmp_path / "dl" / "face.png"
    with pytest.raises(StorageError, match="no such object|no object"):
        store.get_file("jobs/j/inputs/face.png", dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_a_download_cut_short_is_read_again_and_fails_cleanly_when_it_keeps_breaking(tmp_path):
    # The connection drops after 3 of 10 bytes: read again; never a truncated portrait to render.
    class CutShort:
        def __init__(self, cuts: int) -> None:
            self.cuts, self.gets = cuts, 0

        def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
            self.gets += 1
            data = b"abc" if self.gets <= self.cuts else b"0123456789"
            return {"Body": StreamingBody(io.BytesIO(data), 10), "ContentLength": 10}

    once = CutShort(cuts=1)
    back = S3Store("renders", client=once).get_file("jobs/j/inputs/face.png", tmp_path / "ok" / "face.png")
    assert back.read_bytes() == b"0123456789" and once.gets == 2
    always = CutShort(cuts=99)
    dest = tmp_path / "dl" / "face.png"
    with pytest.raises(StorageError, match="cannot read jobs/j/inputs/face.png"):
        S3Store("renders", client=always).get_file("jobs/j/inputs/face.png", dest)
    assert list(dest.parent.iterdir()) == [] and always.gets == 3


def test_gc_removes_only_old_objects(store):
    store.put_bytes(job_key("old", "outputs", "a.mp4"), b"a")
    store.put_bytes(job_key("new", "outputs", "b.mp4"), b"b")
    written = max(modified for _, modified in store.keys())
    assert gc(store, older_than_s=60, now=written + 30) == 0  # nothing is an hour old yet
    assert gc(store, older_than_s=60, prefix="jobs/old/", now=written + 61) == 1
    assert [k for k, _ in store.keys()] == ["jobs/new/outputs/b.mp4"]
    assert gc(store, older_than_s=60, now=written + 61) == 1
    assert list(store.keys()) == []


def test_presigned_urls_download_without_credentials(seaweed):
    prefix = uuid.uuid4().hex
    store = S3Store("sonic-probe", prefix=prefix, endpoint_url=seaweed.endpoint, client=seaweed.client())
    store.put_bytes("jobs/j/outputs/x.mp4", b"video bytes", "video/mp4")
    answer = requests.get(store.url("jobs/j/outputs/x.mp4", expires_s=60), timeout=10)
    assert answer.status_code == 200 and answer.content == b"video bytes"
    plain = f"{seaweed.endpoint}/sonic-probe/{prefix}/jobs/j/outputs/x.mp4"
    assert requests.get(plain, timeout=10).status_code == 403  # the bucket itself is private


def test_wrong_credentials_and_missing_buckets_are_one_line(seaweed):
    refused = S3Store("sonic-probe", endpoint_url=seaweed.endpoint, client=seaweed.client(secret="wrong"))
    with pytest.raises(StorageError, match="credentials refused") as err:
        refused.put_bytes("jobs/j/inputs/a.wav", b"x")
    assert "\n" not in str(err.value)
    missing = S3Store("no-such-bucket-here", endpoint_url=seaweed.endpoint, client=seaweed.client())
    with pytest.raises(StorageError, match="no such bucket"):
        missing.ping()


def test_an_unreachable_endpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = open_store("s3://renders/sonic", s3_endpoint="http://127.0.0.1:9")
    with pytest.raises(StorageError, match="unreachable: check --s3-endpoint"):
        store.ping()


def test_store_specs_and_bad_keys(tmp_path):
    assert isinstance(open_store(str(tmp_path / "data")), LocalStore)
    with pytest.raises(StorageError, match="s3://BUCKET"):
        open_store("gs://bucket")
    with pytest.raises(StorageError, match="job id"):
        job_key("../etc", "outputs", "x")
    with pytest.raises(StorageError, match="inside the store"):
        LocalStore(tmp_path).put_bytes("../escape.txt", b"x")


def test_the_gc_command_removes_old_outputs(tmp_path, capsys):
    import os

    from comfyui_sonic.runner.cli import main

    store = LocalStore(tmp_path / "objects")
    store.put_bytes(job_key("old", "outputs", "a.mp4"), b"a")
    store.put_bytes(job_key("new", "outputs", "b.mp4"), b"b")
    week_ago = time.time() - 8 * 86400
    os.utime(store.root / "jobs/old/outputs/a.mp4", (week_ago, week_ago))
    assert main(["gc", "--bucket", str(store.root), "--older-than", "7d"]) == 0
    assert "removed 1 object(s)" in capsys.readouterr().out
    assert [k for k, _ in store.keys()] == ["jobs/new/outputs/b.mp4"]
    assert main(["gc", "--bucket", str(store.root), "--older-than", "a while"]) == 2
    assert "7d, 36h or 90m" in capsys.readouterr().err
