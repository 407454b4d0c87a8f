"""Reading batch manifests: every good row becomes a job, every bad row says why."""

from __future__ import annotations

import json

import pytest
from comfyui_sonic.runner.manifest import ManifestError, read_manifest


@pytest.fixture
def media(tmp_path):
    """A batch folder with two portraits and two speech clips next to the manifest."""
    (tmp_path / "faces").mkdir()
    for name in ("faces/alice.png", "faces/bob.png", "alice.wav", "bob.wav"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_a_csv_manifest_gives_one_job_per_row(media):
    manifest = media / "batch.csv"
    manifest.write_text(
        "id,image,audio,priority,seed,Sonic.inference_steps\n"
        "alice,faces/alice.png,alice.wav,P0,42,30\n"
        "bob,faces/bob.png,bob.wav,,7,\n"
    )
    alice, bob = read_manifest(manifest)
    assert alice == {
        "row": 1,
        "line": 2,
        "id": "alice",
        "priority": 0,
        "image": str(media / "faces/alice.png"),
        "audio": str(media / "alice.wav"),
        "params": {"seed": "42", "Sonic.inference_steps": "30"},
        "error": None,
    }
    # empty cells keep the template's value; priority defaults to P1
    assert bob["priority"] == 1 and bob["params"] == {"seed": "7"} and bob["error"] is None


def test_a_json_lines_manifest_keeps_json_types(media):
    manifest = media / "batch.jsonl"
    rows = [
        {"image": "faces/alice.png", "audio": "alice.wav", "seed": 42, "dynamic_scale": 1.1},
        {"image": str(media / "faces/bob.png"), "audio": "bob.wav", "priority": "p2", "params": {"fps": 30}},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    alice, bob = read_manifest(manifest)
    assert alice["params"] == {"seed": 42, "dynamic_scale": 1.1} and alice["id"] is None
    assert bob["priority"] == 2 and bob["params"] == {"fps": 30}
    assert bob["image"] == str(media / "faces/bob.png")


def test_a_bad_row_names_its_row_and_column_and_the_rest_go_on(media):
    manifest = media / "batch.csv"
    manifest.write_text(
        "image,audio,priority,id\n"
        "faces/alice.png,missing.wav,,a\n"
        "faces/alice.png,alice.wav,P9,b\n"
        ",alice.wav,,c\n"
        "faces/bob.png,bob.wav,,a\n"
        "faces/bob.png,bob.wav,,d,extra\n"
        "faces/bob.png,bob.wav,P2,e\n"
    )
    rows = list(read_manifest(manifest))
    errors = [r["error"] for r in rows]
    assert "row 1 (line 2), column 'audio'" in errors[0] and "missing.wav not found" in errors[0]
    assert "row 2 (line 3), column 'priority': 'P9' is not P0, P1 or P2" in errors[1]
    assert "row 3 (line 4), column 'image': empty" in errors[2]
    assert "row 4 (line 5), column 'id': 'a' is used by an earlier row" in errors[3]
    assert "row 5 (line 6): 5 cells but the header has 4 columns" in errors[4]
    assert errors[5] is None and rows[5]["id"] == "e" and rows[5]["priority"] == 2
    assert all("\n" not in e for e in errors if e)


def test_a_bad_json_line_is_one_bad_row(media):
    manifest = media / "batch.jsonl"
    manifest.write_text(
        '{"image": "faces/alice.png", "audio": "alice.wav"}\n'
        "{not json\n"
        '["a list"]\n'
        '{"image": "faces/bob.png", "audio": "bob.wav"}\n'
    )
    rows = list(read_manifest(manifest))
    assert [r["error"] is None for r in rows] == [True, False, False, True]
    assert "row 2 (line 2): not valid JSON" in rows[1]["error"]
    assert "row 3 (line 3): expected a JSON object" in rows[2]["error"]


def test_header_names_are_forgiving_and_excel_bom_is_ignored(media):
    manifest = media / "batch.csv"
    manifest.write_bytes("\ufeff Image , AUDIO ,Job_ID\nfaces/alice.png,alice.wav,x1\n".encode())
    (row,) = read_manifest(manifest)
    assert row["id"] == "x1" and row["error"] is None


def test_a_file_without_image_or_audio_columns_is_refused_at_once(media):
    manifest = media / "batch.csv"
    manifest.write_text("portrait,speech\na.png,a.wav\n")
    with pytest.raises(
        ManifestError, match=r"no 'image' or 'audio' column; the header has 'portrait', 'speech'"
    ):
        read_manifest(manifest)


def test_missing_and_empty_manifests_are_refused(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(empty)


def test_rows_are_read_lazily(media):
    manifest = media / "big.csv"
    with manifest.open("w") as f:
        f.write("image,audio\n")
        for _ in range(10_000):
            f.write("faces/alice.png,alice.wav\n")
    rows = read_manifest(manifest)
    first = next(rows)
    assert first["row"] == 1 and first["error"] is None
    assert sum(1 for _ in rows) == 9_999


def test_paths_cost_one_folder_lookup_and_one_stat_per_distinct_file(media, monkeypatch):
    """A 10,000-row manifest spent most of a second in Path.resolve per row: the folder is resolved
    once, row paths are joined as strings, and each distinct file is checked once."""
    import os
    from pathlib import Path

    manifest = media / "big.csv"
    rows = [
        "faces/alice.png,alice.wav",
        f"{media}/faces/bob.png,../{media.name}/./bob.wav",
        "~/nope.png,alice.wav",
    ]
    manifest.write_text("image,audio\n" + "\n".join(rows * 200) + "\n")
    resolved, checked = [], []
    real_resolve, real_isfile = Path.resolve, os.path.isfile
    monkeypatch.setattr(
        Path, "resolve", lambda self, *a, **k: resolved.append(self) or real_resolve(self, *a, **k)
    )
    monkeypatch.setattr(os.path, "isfile", lambda p: checked.append(p) or real_isfile(p))
    got = list(read_manifest(manifest))
    assert len(got) == 600 and len(resolved) <= 1 and len(checked) == len(set(checked)) <= 5
    assert (got[0]["image"], got[0]["audio"]) == (str(media / "faces/alice.png"), str(media / "alice.wav"))
    assert (got[1]["image"], got[1]["audio"]) == (str(media / "faces/bob.png"), str(media / "bob.wav"))
    assert str(Path.home() / "nope.png") in got[2]["error"] and got[2]["image"] is None
