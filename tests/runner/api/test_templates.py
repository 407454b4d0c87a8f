"""`sonic-runner templates add|list|remove`: workflows every `serve` replica accepts by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comfyui_sonic.runner.api.app import create_app
from comfyui_sonic.runner.cli import main
from fastapi.testclient import TestClient

from tests.runner.api.test_serve import ROOT, _files, _settings, _wait_done

SHIPPED = ROOT / "workflows" / "api" / "sonic_lite_fast_api.json"


def _workflow(tmp_path: Path, change=None, name: str = "shop_api.json") -> Path:
    graph = json.loads(SHIPPED.read_text())
    graph["7"]["inputs"]["filename_prefix"] = "shop/intro"
    graph["5"]["_meta"]["title"] = "Talk"  # a template of its own: inputs named by its titles
    if change is not None:
        change(graph)
    path = tmp_path / name
    path.write_text(json.dumps(graph))
    return path


def test_a_registered_template_is_listed_and_renders_on_any_replica(tmp_path, capsys):
    settings = _settings(tmp_path)
    db = ["--db", settings.db_url]
    with (
        TestClient(create_app(settings)) as client,
        TestClient(create_app(_settings(tmp_path), start_workers=False)) as replica,
    ):
        assert main(["templates", "add", "shop_intro_fast", str(_workflow(tmp_path)), *db]) == 0
        assert "shop_intro_fast (tier fast) registered" in capsys.readouterr().out

        listed = {t["name"]: t for t in replica.get("/v1/templates").json()["templates"]}
        shop = listed["shop_intro_fast"]
        assert shop["source"] == "registered" and shop["tier"] == "fast" and shop["tiers"] == ["fast"]
        assert "Talk.seed" in shop["inputs"] and "seed" in shop["inputs"]
        assert listed["sonic_lite_fast"]["source"] == "shipped"
        assert listed["sonic_lite_fast"]["tiers"] == ["fast", "balanced", "hq"]

        # asked for by its stem and tier, on the replica that has no worker: the other renders it
        answer = replica.post("/v1/jobs", files=_files(), data={"template": "shop_intro", "tier": "fast"})
        assert answer.status_code == 202, answer.text
        refused = replica.post(
            "/v1/jobs", files=_files(), data={"template": "shop_intro_fast", "Animate.seed": "1"}
        )
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "Animate.seed"

        # removed while the job waits: the queued job keeps its copy of the workflow
        assert main(["templates", "remove", "shop_intro_fast", *db]) == 0
        done = _wait_done(client, f"/v1/jobs/{answer.json()['id']}")
        assert done["status"] == "done", done
        assert done["template"] == "shop_intro_fast" and done["tier"] == "fast"
        assert done["outputs"][0]["name"].startswith("intro")
        gone = client.post("/v1/jobs", files=_files(), data={"template": "shop_intro_fast"})
        assert gone.status_code == 422 and gone.json()["error"]["code"] == "unknown_template"


def test_templates_list_and_replace_from_the_command_line(tmp_path, capsys):
    db = ["--db", f"sqlite:///{tmp_path / 'jobs.sqlite'}"]
    path = _workflow(tmp_path)
    assert main(["templates", "add", "school", str(path), "--tier", "hq", *db]) == 0
    assert main(["templates", "add", "school", str(path), *db]) == 2
    assert "exists already; add --replace" in capsys.readouterr().err
    assert main(["templates", "add", "school", str(path), "--replace", *db]) == 0
    capsys.readouterr()
    assert main(["templates", "list", "--json", *db]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "school" and row["tier"] is None and "Talk.seed" in row["inputs"]
    assert main(["templates", "remove", "school", *db]) == 0
    assert main(["templates", "remove", "school", *db]) == 2
    assert "no such template" in capsys.readouterr().err


def _drop(class_type: str):
    def change(graph: dict) -> None:
        for node_id in [k for k, n in graph.items() if n["class_type"] == class_type]:
            del graph[node_id]

    return change


def _link_image(graph: dict) -> None:
    graph["1"]["inputs"]["image"] = ["2", 0]


@pytest.mark.parametrize(
    ("name", "change", "words"),
    [
        ("shop", _drop("SONIC_Inference"), "no SONIC_Inference node"),
        ("shop", _drop("LoadAudio"), "no LoadAudio node with an 'audio' input"),
        ("shop", _link_image, "LoadImage.image is linked"),
        ("shop", _drop("VideoEncode"), "no video output node"),
        ("sonic_lite_fast", None, "is a shipped template"),
        ("bad name!", None, "template name 'bad name!'"),
    ],
)
def test_a_workflow_the_api_could_not_fill_in_is_refused_in_one_line(tmp_path, capsys, name, change, words):
    db = ["--db", f"sqlite:///{tmp_path / 'jobs.sqlite'}"]
    assert main(["templates", "add", name, str(_workflow(tmp_path, change)), *db]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


def test_a_ui_format_file_is_refused_with_the_way_to_get_the_api_one(tmp_path, capsys):
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert main(["templates", "add", "shop", str(ui), "--db", f"sqlite:///{tmp_path / 'j.sqlite'}"]) == 2
    assert "UI (drag-and-drop) format" in capsys.readouterr().err
