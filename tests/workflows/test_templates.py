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
            assert f"sonic_{backend}_{tier}.json" in names
            assert f"sonic_{backend}_{tier}_api.json" in names


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
