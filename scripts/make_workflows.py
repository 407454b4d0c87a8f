"""Writes the workflow templates in workflows/ from one description of the graph.

Both formats come from the same table so they cannot drift apart: the UI
format (drag-and-drop into ComfyUI's editor, node positions and links) in
workflows/, and the API format (what the runner submits) in workflows/api/.
tests/workflows/test_templates.py checks the committed files equal what this
script writes and that every template matches the node schemas.

    python scripts/make_workflows.py          # rewrite the templates
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("lite", "sonic")

# QoS tiers (DESIGN.md section 3): fast 20 steps, balanced 25, hq 30.
TIERS: dict[str, dict[str, dict]] = {
    "fast": {
        "Prepare": {"min_resolution": 512},
        "Animate": {"inference_steps": 20},
        "Lip Sync": {"smoothing": 0.2},
        "Save MP4": {"crf": 23},
    },
    "balanced": {
        "Prepare": {"min_resolution": 512},
        "Animate": {"inference_steps": 25},
        "Lip Sync": {"smoothing": 0.3},
        "Save MP4": {"crf": 19},
    },
    "hq": {
        "Prepare": {"min_resolution": 768},
        "Animate": {"inference_steps": 30},
        "Lip Sync": {"smoothing": 0.3},
        "Save MP4": {"crf": 16},
    },
}

# (id, class_type, title, {input: value or ("link", source_id, slot)})
GRAPH = [
    ("1", "LoadImage", "Portrait", {"image": "sonic_example_face.jpg"}),
    ("2", "LoadAudio", "Speech", {"audio": "sonic_example_speech.wav"}),
    ("3", "SONIC_ModelLoader", "Sonic Model", {}),
    ("4", "SONIC_PreData", "Prepare", {"image": ("link", "1", 0), "audio": ("link", "2", 0)}),
    ("5", "SONIC_Inference", "Animate", {"model": ("link", "3", 0), "data": ("link", "4", 0)}),
    (
        "6",
        "LipSyncCorrect",
        "Lip Sync",
        {"images": ("link", "5", 0), "audio": ("link", "5", 1), "fps": ("link", "5", 2)},
    ),
    (
        "7",
        "VideoEncode",
        "Save MP4",
        {"images": ("link", "6", 0), "audio": ("link", "6", 1), "fps": ("link", "5", 2)},
    ),
]

# Input schemas of the two core nodes the templates use (ComfyUI's nodes.py LoadImage and
# comfy_extras/nodes_audio.py LoadAudio); the upload widgets are front-end only.
CORE_SCHEMAS = {
    "LoadImage": (
        {"required": {"image": (["sonic_example_face.jpg"], {"image_upload": True})}},
        ("IMAGE", "MASK"),
        ("IMAGE", "MASK"),
    ),
    "LoadAudio": (
        {"required": {"audio": (["sonic_example_speech.wav"], {"audio_upload": True})}},
        ("AUDIO",),
        ("AUDIO",),
    ),
}
CORE_EXTRA_WIDGETS = {
    "LoadImage": ["image"],
    "LoadAudio": [None, None],
}  # values of the upload widgets in saved files


def node_schema(class_type: str) -> tuple[dict, tuple, tuple]:
    """(INPUT_TYPES(), RETURN_TYPES, output names) of a node class."""
    if class_type in CORE_SCHEMAS:
        return CORE_SCHEMAS[class_type]
    from comfyui_sonic import NODE_CLASS_MAPPINGS

    cls = NODE_CLASS_MAPPINGS[class_type]
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return cls.INPUT_TYPES(), tuple(cls.RETURN_TYPES), tuple(names)


def is_widget(spec: tuple) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")


def default_value(spec: tuple):
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, list):
        return kind[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


# x264 presets per backend: for lite the encoder costs as much CPU as the animation, so
# its tiers trade file size for speed; for sonic the encoder is noise next to the diffusion.
ENCODER_PRESETS = {
    "lite": {"fast": "superfast", "balanced": "veryfast", "hq": "medium"},
    "sonic": {"fast": "veryfast", "balanced": "medium", "hq": "slow"},
}


def tier_values(backend: str, tier: str) -> dict[str, dict]:
    values = {title: dict(v) for title, v in TIERS[tier].items()}
    values["Save MP4"]["preset"] = ENCODER_PRESETS[backend][tier]
    values.setdefault("Sonic Model", {})["backend"] = backend
    values["Save MP4"]["filename_prefix"] = f"sonic/{backend}_{tier}"
    return values


def api_workflow(backend: str, tier: str) -> dict:
    overrides = tier_values(backend, tier)
    prompt = {}
    for node_id, class_type, title, given in GRAPH:
        schema, _, _ = node_schema(class_type)
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in schema.get(section, {}).items():
                if name in given:
                    value = given[name]
                    inputs[name] = [value[1], value[2]] if isinstance(value, tuple) else value
                elif name in overrides.get(title, {}):
                    inputs[name] = overrides[title][name]
                elif is_widget(spec):
                    inputs[name] = default_value(spec)
        prompt[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
    return prompt


def ui_workflow(backend: str, tier: str) -> dict:
    """The editor's format: nodes with slots and widget values, links as [id, from, slot, to, slot, type]."""
    api = api_workflow(backend, tier)
    links: list[list] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    nodes = []
    for order, (node_id, class_type, title, _) in enumerate(GRAPH):
        schema, return_types, return_names = node_schema(class_type)
        inputs, widgets = [], []
        for section in ("required", "optional"):
            for name, spec in schema.get(section, {}).items():
                value = api[node_id]["inputs"].get(name)
                kind = "COMBO" if isinstance(spec[0], list) else spec[0]
                if isinstance(value, list):
                    link_id = len(links) + 1
                    src, slot = value
                    src_type = node_schema(api[src]["class_type"])[1][slot]
                    links.append([link_id, int(src), slot, int(node_id), len(inputs), src_type])
                    out_links.setdefault((src, slot), []).append(link_id)
                    entry = {"name": name, "type": kind, "link": link_id}
                    if is_widget(spec):
                        entry["widget"] = {"name": name}
                    inputs.append(entry)
                elif not is_widget(spec):
                    inputs.append({"name": name, "type": kind, "link": None})
                if is_widget(spec):
                    widgets.append(
                        value if value is not None and not isinstance(value, list) else default_value(spec)
                    )
                    if len(spec) > 1 and spec[1].get("control_after_generate"):
                        widgets.append("fixed")
        widgets += CORE_EXTRA_WIDGETS.get(class_type, [])
        outputs = [
            {"name": n, "type": t, "links": [], "slot_index": i}
            for i, (t, n) in enumerate(zip(return_types, return_names, strict=True))
        ]
        nodes.append(
            {
                "id": int(node_id),
                "type": class_type,
                "pos": _position(order),
                "size": [320, 60 + 26 * (len(inputs) + len(widgets))],
                "flags": {},
                "order": order,
                "mode": 0,
                "title": title,
                "inputs": inputs,
                "outputs": outputs,
                "properties": {"Node name for S&R": class_type},
                "widgets_values": widgets,
            }
        )
    for node in nodes:
        for out in node["outputs"]:
            out["links"] = out_links.get((str(node["id"]), out["slot_index"]), []) or None
    return {
        "last_node_id": len(nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
        "version": 0.4,
    }


def _position(order: int) -> list[int]:
    column = {0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4}[order]
    row = {0: 0, 1: 1, 2: 2}.get(order, 0)
    return [40 + 380 * column, 60 + 260 * row]


def templates() -> dict[Path, dict]:
    files = {}
    for backend in BACKENDS:
        for tier in TIERS:
            files[Path("workflows") / f"sonic_{backend}_{tier}.json"] = ui_workflow(backend, tier)
            files[Path("workflows") / "api" / f"sonic_{backend}_{tier}_api.json"] = api_workflow(
                backend, tier
            )
    return files


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # noqa: F401  (makes the pack importable as comfyui_sonic from a checkout)

    for rel, doc in templates().items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
