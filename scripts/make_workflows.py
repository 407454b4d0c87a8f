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
# Where the speech comes from: a clip (core LoadAudio) or a text spoken by SONIC_TextToSpeech.
SOURCES = ("audio", "text")

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
    ("2", "LoadAudio", "Speech", {"audio": "sonic_example_speech.wav"}),  # text templates: SONIC_TextToSpeech
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

SPEECH_NODES = {
    "audio": ("2", "LoadAudio", "Speech", {"audio": "sonic_example_speech.wav"}),
    "text": ("2", "SONIC_TextToSpeech", "Speech", {}),
}


def graph(source: str = "audio") -> list[tuple]:
    """GRAPH with the speech node for `source` (the rest of the graph is the same)."""
    return [SPEECH_NODES[source] if node[0] == "2" else node for node in GRAPH]


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
CORE_SCHEMAS["Note"] = ({"required": {"text": ("STRING", {"multiline": True})}}, (), ())
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


def template_name(backend: str, tier: str, source: str = "audio") -> str:
    """sonic_lite_fast, sonic_lite_text_fast, ..."""
    return f"sonic_{backend}_{'text_' if source == 'text' else ''}{tier}"


def tier_values(backend: str, tier: str, source: str = "audio") -> dict[str, dict]:
    values = {title: dict(v) for title, v in TIERS[tier].items()}
    values["Save MP4"]["preset"] = ENCODER_PRESETS[backend][tier]
    values.setdefault("Sonic Model", {})["backend"] = backend
    values["Save MP4"]["filename_prefix"] = "sonic/" + template_name(backend, tier, source).removeprefix(
        "sonic_"
    )
    return values


def api_workflow(backend: str, tier: str, source: str = "audio") -> dict:
    overrides = tier_values(backend, tier, source)
    prompt = {}
    for node_id, class_type, title, given in graph(source):
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


def ui_workflow(backend: str, tier: str, source: str = "audio") -> dict:
    """The editor's format: nodes with slots and widget values, links as [id, from, slot, to, slot, type]."""
    api = api_workflow(backend, tier, source)
    links: list[list] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    nodes = []
    positions = layout(source)
    for order, (node_id, class_type, title, _) in enumerate(graph(source)):
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
                "pos": list(positions[title]),
                "size": [NODE_WIDTH, node_height(class_type)],
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
    note_id = len(nodes) + 1
    nodes.append(
        {
            "id": note_id,
            "type": "Note",
            "pos": list(NOTE_POS),
            "size": list(NOTE_SIZE),
            "flags": {},
            "order": len(nodes),
            "mode": 0,
            "title": "Start here",
            "inputs": [],
            "outputs": [],
            "properties": {},
            "widgets_values": [note_text(backend, tier, source)],
        }
    )
    return {
        "last_node_id": note_id,
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups(nodes),
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [20, 20]}},
        "version": 0.4,
    }


# ---------------------------------------------------------------- layout
# LiteGraph's metrics (ComfyUI frontend): a title bar above `pos`, one row per slot, one per widget.
TITLE_HEIGHT = 30
SLOT_HEIGHT = 20
WIDGET_HEIGHT = 24
NODE_WIDTH = 300
# What ComfyUI adds below a node's widgets once it has something to show: the LoadImage preview,
# the audio player, our read-only info text (web/sonic.js), the MP4 preview above its info text.
PREVIEW_HEIGHT = {
    "Portrait": 300,
    "Speech": 60,
    "Sonic Model": 90,
    "Prepare": 90,
    "Lip Sync": 90,
    "Save MP4": 400,
}
# By class where it differs from its title's: the text-to-speech node shows its info text, and its
# two multiline boxes (text, http_options) stand taller than one widget row each.
CLASS_PREVIEW_HEIGHT = {"SONIC_TextToSpeech": 90 + 2 * 60}
GAP = 40
GROUP_PAD = 40  # room for a group's title above its first node

# columns left to right; nodes top to bottom within a column
COLUMNS = [["Portrait", "Speech"], ["Sonic Model", "Prepare"], ["Animate"], ["Lip Sync"], ["Save MP4"]]
GROUPS = {
    "Inputs": ["Portrait", "Speech"],
    "Sonic": ["Sonic Model", "Prepare", "Animate", "Lip Sync"],
    "Output": ["Save MP4"],
}
GROUP_COLORS = {"Inputs": "#3f789e", "Sonic": "#88A", "Output": "#b06634"}
NOTE_SIZE = (NODE_WIDTH * 2 + GAP, 170)
NOTE_POS = (GAP, GAP + TITLE_HEIGHT)
TOP = NOTE_POS[1] + NOTE_SIZE[1] + GAP + GROUP_PAD + TITLE_HEIGHT


def node_height(class_type: str) -> int:
    """A compact height: slot rows plus widget rows (ComfyUI grows a node that needs more)."""
    schema, return_types, _ = node_schema(class_type)
    inputs = widgets = 0
    for section in ("required", "optional"):
        for spec in schema.get(section, {}).values():
            if not is_widget(spec):
                inputs += 1
            else:
                widgets += 1 + bool(len(spec) > 1 and spec[1].get("control_after_generate"))
    if class_type == "LoadAudio":
        widgets += 1  # the upload button; the player is in PREVIEW_HEIGHT
    return 10 + SLOT_HEIGHT * max(inputs, len(return_types)) + WIDGET_HEIGHT * widgets


def layout(source: str = "audio") -> dict[str, tuple[int, int]]:
    """Positions from the compact heights plus the previews, so nothing overlaps once they show."""
    classes = {title: class_type for _, class_type, title, _ in graph(source)}
    positions = {}
    for column, titles in enumerate(COLUMNS):
        x = GAP + column * (NODE_WIDTH + GAP + 30)
        y = TOP
        for title in titles:
            positions[title] = (x, y)
            y += (
                node_height(classes[title])
                + preview_height(title, classes[title])
                + TITLE_HEIGHT
                + GAP
                + GROUP_PAD
            )
    return positions


def preview_height(title: str, class_type: str) -> int:
    """Room ComfyUI adds below a node's compact height once it shows its preview or info."""
    return CLASS_PREVIEW_HEIGHT.get(class_type, PREVIEW_HEIGHT.get(title, 0))


def node_box(node: dict) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) a node covers on the canvas: title bar, body and its preview."""
    x, y = node["pos"]
    w, h = node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + h + preview_height(node["title"], node.get("type", ""))


def groups(nodes: list[dict]) -> list[dict]:
    """One titled group around each part of the graph."""
    by_title = {n["title"]: n for n in nodes}
    out = []
    for name, titles in GROUPS.items():
        boxes = [node_box(by_title[t]) for t in titles]
        x0 = min(b[0] for b in boxes) - 10
        y0 = min(b[1] for b in boxes) - GROUP_PAD
        x1 = max(b[2] for b in boxes) + 10
        y1 = max(b[3] for b in boxes) + 10
        out.append(
            {
                "title": name,
                "bounding": [x0, y0, x1 - x0, y1 - y0],
                "color": GROUP_COLORS[name],
                "font_size": 24,
                "flags": {},
            }
        )
    return out


NEEDS = {
    "lite": "Runs on the CPU; no model files to download.",
    "sonic": "Needs a GPU and the Sonic weights in ComfyUI/models/sonic plus svd_xt.safetensors in "
    "models/checkpoints (Sonic Model lists every missing file at once).",
}
# Rough time per 10 s of speech: lite from benchmarks/bench_lite.py (README "Speed"); sonic not yet
# measured on a GPU, so no number is claimed for it.
DURATIONS = {
    "lite": {
        "fast": "About 2 s per 10 s of audio on a laptop CPU (512 px).",
        "balanced": "About 2 s per 10 s of audio on a laptop CPU (512 px).",
        "hq": "About 3-4 s per 10 s of audio on a laptop CPU (768 px).",
    },
    "sonic": {
        "fast": "Minutes per 10 s of audio on a GPU (20 steps, 512 px); far too slow on a CPU.",
        "balanced": "Minutes per 10 s of audio on a GPU (25 steps, 512 px); far too slow on a CPU.",
        "hq": "Several minutes per 10 s of audio on a GPU (30 steps, 768 px); far too slow on a CPU.",
    },
}


SPEECH_STEP = {
    "audio": "1. Pick a portrait in Portrait (one face, facing the camera) and a speech clip in Speech.\n",
    "text": "1. Pick a portrait in Portrait (one face, facing the camera) and type the text in Speech "
    "(espeak-ng on this machine, or backend http with your TTS service's url).\n",
}


def note_text(backend: str, tier: str, source: str = "audio") -> str:
    """What to do first, on the canvas (ComfyUI's template browser shows only the file name)."""
    return (
        f"Sonic {backend} / {'text / ' if source == 'text' else ''}{tier}. {NEEDS[backend]}\n"
        f"{SPEECH_STEP[source]}"
        "2. Press Run. Each node shows its progress; the MP4 appears in Save MP4 and in "
        "ComfyUI/output/sonic/.\n"
        f"{DURATIONS[backend][tier]}"
    )


def templates() -> dict[Path, dict]:
    files = {}
    for source in SOURCES:
        for backend in BACKENDS:
            for tier in TIERS:
                name = template_name(backend, tier, source)
                files[Path("workflows") / f"{name}.json"] = ui_workflow(backend, tier, source)
                files[Path("workflows") / "api" / f"{name}_api.json"] = api_workflow(backend, tier, source)
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
