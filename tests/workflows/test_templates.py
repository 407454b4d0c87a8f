"""Every shipped template matches the node schemas, and both formats agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_workflows", ROOT / "scripts" / "make_workflows.py")
make_workflows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_workflows)

API_FILES = sorted((ROOT / "workflows" / "api").glob("*_api.json"))
UI_FILES = sorted((ROOT / "workflows").glob("*.json"))
DYNAMIC_CHOICES = {("SONIC_ModelLoader", "svd_checkpoint"), ("LoadImage", "image"), ("LoadAudio", "audio")}


def test_every_backend_and_tier_has_both_formats():
    names = {p.name for p in API_FILES} | {p.name for p in UI_FILES}
    for backend in ("lite", "sonic"):
        for tier in ("fast", "balanced", "hq"):
            for stem in (f"sonic_{backend}_{tier}", f"sonic_{backend}_text_{tier}"):
                assert f"{stem}.json" in names
                assert f"{stem}_api.json" in names


def test_committed_templates_are_what_the_generator_writes():
    for rel, doc in make_workflows.templates().items():
        assert (ROOT / rel).read_text() == make_workflows.render(doc), (
            f"{rel} is stale: run python scripts/make_workflows.py"
        )


def _check_value(where: str, spec: tuple, value) -> None:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        assert value in kind, f"{where}: {value!r} is not one of {kind}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    if kind in ("INT", "FLOAT"):
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{where}: {value} out of range"


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.name)
def test_api_template_matches_node_schemas(path):
    prompt = json.loads(path.read_text())
    for node_id, node in prompt.items():
        schema, _, _ = make_workflows.node_schema(node["class_type"])
        declared = {**schema.get("required", {}), **schema.get("optional", {})}
        assert node["_meta"]["title"], node_id
        for name in schema.get("required", {}):
            assert name in node["inputs"], f"{path.name}: {node['class_type']}.{name} missing"
        for name, value in node["inputs"].items():
            where = f"{path.name}: {node['class_type']}.{name}"
            assert name in declared, f"{where} is not an input of the node"
            if isinstance(value, list):
                source = prompt[value[0]]
                source_types = make_workflows.node_schema(source["class_type"])[1]
                assert source_types[value[1]] == declared[name][0], f"{where}: link type mismatch"
            elif (node["class_type"], name) not in DYNAMIC_CHOICES:
                _check_value(where, declared[name], value)


@pytest.mark.parametrize(
    "path", [p for p in UI_FILES if not p.name.endswith("_api.json")], ids=lambda p: p.name
)
def test_ui_template_links_and_widgets_are_consistent(path):
    doc = json.loads(path.read_text())
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert doc["last_node_id"] == max(nodes) and doc["last_link_id"] == len(doc["links"])
    for link_id, src, src_slot, dst, dst_slot, link_type in doc["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert out["type"] == link_type
        assert inp["type"] in (link_type, "COMBO"), (
            f"{path.name}: link {link_id} {link_type} -> {inp['type']}"
        )
    for node in doc["nodes"]:
        schema, _, _ = make_workflows.node_schema(node["type"])
        widgets = [
            s
            for sec in ("required", "optional")
            for s in schema.get(sec, {}).values()
            if make_workflows.is_widget(s)
        ]
        expected = len(widgets) + sum(1 for s in widgets if len(s) > 1 and s[1].get("control_after_generate"))
        expected += len(make_workflows.CORE_EXTRA_WIDGETS.get(node["type"], []))
        assert len(node["widgets_values"]) == expected, f"{path.name}: {node['type']} widget count"


def test_tiers_set_the_documented_step_counts():
    for tier, steps in (("fast", 20), ("balanced", 25), ("hq", 30)):
        prompt = json.loads((ROOT / "workflows" / "api" / f"sonic_sonic_{tier}_api.json").read_text())
        animate = next(n for n in prompt.values() if n["class_type"] == "SONIC_Inference")
        assert animate["inputs"]["inference_steps"] == steps


def test_every_ui_template_has_a_thumbnail_for_comfyuis_template_browser():
    for path in UI_FILES:
        assert path.with_suffix(".jpg").is_file(), f"{path.name} has no thumbnail"


def _boxes(doc: dict) -> dict[str, tuple]:
    return {node["title"]: make_workflows.node_box(node) for node in doc["nodes"]}


@pytest.mark.parametrize(
    "path", [p for p in UI_FILES if not p.name.endswith("_api.json")], ids=lambda p: p.name
)
def test_no_two_nodes_overlap_once_their_previews_show(path):
    """Each node's box is its title bar, body and the preview ComfyUI adds below it (image, player, info)."""
    boxes = _boxes(json.loads(path.read_text()))
    titles = sorted(boxes)
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
            apart = ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0
            assert apart, f"{path.name}: {a} {boxes[a]} overlaps {b} {boxes[b]}"


def test_the_overlap_check_sees_a_preview_that_reaches_the_next_node():
    doc = make_workflows.ui_workflow("lite", "fast")
    portrait = next(n for n in doc["nodes"] if n["title"] == "Portrait")
    speech = next(n for n in doc["nodes"] if n["title"] == "Speech")
    speech["pos"] = [
        portrait["pos"][0],
        portrait["pos"][1] + portrait["size"][1] + 10,
    ]  # the old layout's mistake
    a, b = make_workflows.node_box(portrait), make_workflows.node_box(speech)
    assert a[3] > b[1], "the Portrait preview must reach into a Speech node placed right below its widgets"


@pytest.mark.parametrize(
    "path", [p for p in UI_FILES if not p.name.endswith("_api.json")], ids=lambda p: p.name
)
def test_titled_groups_hold_their_nodes_and_a_note_says_what_to_do_first(path):
    doc = json.loads(path.read_text())
    boxes = _boxes(doc)
    groups = {g["title"]: g["bounding"] for g in doc["groups"]}
    assert set(groups) == {"Inputs", "Sonic", "Output"}
    for name, titles in make_workflows.GROUPS.items():
        gx, gy, gw, gh = groups[name]
        for title in titles:
            x0, y0, x1, y1 = boxes[title]
            assert gx <= x0 and gy < y0 and x1 <= gx + gw and y1 <= gy + gh, f"{title} outside group {name}"
    note = next(n for n in doc["nodes"] if n["type"] == "Note")
    text = note["widgets_values"][0]
    assert "1. Pick a portrait" in text and "per 10 s of audio" in text
    lite = "_lite_" in path.name
    assert ("no model files" in text) == lite and ("Needs a GPU" in text) == (not lite)


def test_nodes_are_compact():
    """No node is much taller than its slots and widgets need (the old ones had large empty areas)."""
    doc = make_workflows.ui_workflow("sonic", "balanced")
    for node in doc["nodes"]:
        if node["type"] == "Note":
            continue
        widgets = len(node["widgets_values"])
        assert node["size"][1] <= 10 + 20 * max(len(node["inputs"]), len(node["outputs"])) + 24 * (
            widgets + 1
        )


def test_each_template_has_its_own_small_thumbnail():
    """A card per template (backend, tier and timing written on a frame it renders), each under 60 KB."""
    from PIL import Image

    thumbs = {p.name: p.read_bytes() for p in sorted((ROOT / "workflows").glob("*.jpg"))}
    assert len(thumbs) == 12 and len(set(thumbs.values())) == 12, "thumbnails must differ per template"
    for name, data in thumbs.items():
        assert len(data) < 60_000, f"{name}: {len(data)} bytes"
        assert Image.open(ROOT / "workflows" / name).size == (480, 360)
