"""Saved ComfyUI workflows (API format) and the batch parameters that fill them.

A batch row names what it changes by node title or class and input name
("Portrait.image", "SONIC_Inference.seed") or by a short alias ("seed"), never
by the numeric node id, so the same manifest keeps working when a template is
edited in ComfyUI and its ids change.

API format: {node_id: {"class_type": str, "inputs": {name: value | [src_id, slot]},
"_meta": {"title": str}}}. An input whose value is [src_id, slot] is a link to
another node's output; the runner never replaces a link with a value, because
that would silently cut the graph the template's author built.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

# Classes of this pack whose inputs the short aliases reach.
OUR_CLASSES = (
    "SONIC_ModelLoader",
    "SONIC_PreData",
    "SONIC_Inference",
    "LipSyncCorrect",
    "VideoEncode",
    "SONIC_TextToSpeech",
)

# alias -> explicit target; the other aliases mean "the input of that name on our nodes".
FIXED_ALIASES = {
    "image": "LoadImage.image",
    "audio": "LoadAudio.audio",
    # text jobs (sonic_*_text_* templates): what SONIC_TextToSpeech says, and how
    "text": "SONIC_TextToSpeech.text",
    "voice": "SONIC_TextToSpeech.voice",
    "speed": "SONIC_TextToSpeech.speed",
    "emotion": "SONIC_TextToSpeech.emotion",
    "emotion_intensity": "SONIC_TextToSpeech.emotion_intensity",
}
NODE_INPUT_ALIASES = (
    "seed",
    "duration",
    "min_resolution",
    "expand_ratio",
    "inference_steps",
    "dynamic_scale",
    "motion_scale",
    "fps",
    "crf",
)

# Declared types of our nodes' numeric inputs. A template saved by ComfyUI's front end
# writes a FLOAT widget holding 25.0 as the JSON number 25, so the template value alone
# cannot tell an INT input from a FLOAT one; for our own nodes we know.
DECLARED_TYPES: dict[str, type] = {
    "seed": int,
    "inference_steps": int,
    "min_resolution": int,
    "crf": int,
    "face_index": int,
    "duration": float,
    "expand_ratio": float,
    "dynamic_scale": float,
    "motion_scale": float,
    "fps": float,
    "min_appearance_guidance_scale": float,
    "max_appearance_guidance_scale": float,
    "audio_guidance_scale": float,
    "speed": float,
    "emotion_intensity": float,
    "concurrency": int,
}

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class WorkflowError(ValueError):
    """A workflow file or a parameter does not fit the template (one line, says what to do)."""


def load_workflow(path: str | Path) -> dict:
    """Read an API-format workflow; a UI-format file is refused with the way to get the API one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(
            f"workflow {path}: file not found; give the path of a saved *_api.json workflow"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(
            f"workflow {path}: cannot read it ({exc}); give a readable UTF-8 JSON file"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"workflow {path}: not valid JSON (line {exc.lineno}: {exc.msg}); save it again from ComfyUI with 'Save (API)'"
        ) from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"workflow {path}: this is the UI (drag-and-drop) format; use its *_api.json twin "
            "or export it from ComfyUI with 'Save (API)'"
        )
    # A saved /prompt request body ({"prompt": {...}, "client_id": ...}) holds the graph under "prompt".
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    _check_api_format(data, path)
    return data


def _check_api_format(data: Any, path: Path) -> None:
    if not isinstance(data, dict) or not data:
        raise WorkflowError(
            f"workflow {path}: expected an object of nodes {{id: {{class_type, inputs}}}}; export it with 'Save (API)'"
        )
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(
                f"workflow {path}: node {node_id!r} has no class_type; export the workflow with 'Save (API)'"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"workflow {path}: node {node_id!r} has inputs that are not an object")


def is_link(value: Any) -> bool:
    """True for [src_id, slot], ComfyUI's way to feed an input from another node's output."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def node_title(node: dict) -> str | None:
    meta = node.get("_meta")
    return meta.get("title") if isinstance(meta, dict) else None


def _split_target(target: str) -> tuple[str, str]:
    # Titles may contain dots ("Sonic v1.2"), input names never do: split at the last one.
    node_part, dot, input_name = target.rpartition(".")
    if not dot or not node_part.strip() or not input_name.strip():
        raise WorkflowError(f"parameter {target!r}: expected 'Title.input' or 'ClassType.input'")
    return node_part.strip(), input_name.strip()


def find_inputs(prompt: dict, target: str) -> list[tuple[str, str]]:
    """(node_id, input) pairs that "Title.input" or "ClassType.input" names.

    Node titles are matched first (exact, case-insensitive); only when no node
    carries that title is the name taken as a class_type. Nodes that match but
    lack the input are not returned.
    """
    node_part, input_name = _split_target(target)
    wanted = node_part.casefold()
    by_title = [nid for nid, node in prompt.items() if (node_title(node) or "").casefold() == wanted]
    nodes = by_title or [
        nid for nid, node in prompt.items() if node.get("class_type", "").casefold() == wanted
    ]
    return [(nid, input_name) for nid in nodes if input_name in prompt[nid].get("inputs", {})]


def _alias_inputs(prompt: dict, alias: str) -> list[tuple[str, str]]:
    return [
        (nid, alias)
        for nid, node in prompt.items()
        if node.get("class_type") in OUR_CLASSES and alias in node.get("inputs", {})
    ]


def _resolve(prompt: dict, key: str) -> list[tuple[str, str]]:
    """The inputs a parameter key addresses, with an error that lists what exists when none."""
    key = key.strip()
    if key in FIXED_ALIASES:
        found = find_inputs(prompt, FIXED_ALIASES[key])
    elif key in NODE_INPUT_ALIASES:
        found = _alias_inputs(prompt, key)
    elif "." in key:
        found = find_inputs(prompt, key)
    else:
        found = []
    if not found:
        raise WorkflowError(
            f"parameter {key!r} matches no input of this workflow; inputs that exist: {', '.join(available_inputs(prompt))}"
        )
    return found


def available_inputs(prompt: dict) -> list[str]:
    """Every settable target ("Title.input") and the aliases this template supports, for error messages."""
    names = [a for a in FIXED_ALIASES if find_inputs(prompt, FIXED_ALIASES[a])]
    names += [a for a in NODE_INPUT_ALIASES if _alias_inputs(prompt, a)]
    for node in prompt.values():
        label = node_title(node) or node.get("class_type", "?")
        names += [f"{label}.{name}" for name, value in node.get("inputs", {}).items() if not is_link(value)]
    return names


def coerce(value: Any, current: Any, where: str, declared: type | None = None) -> Any:
    """Convert a manifest value (often a CSV string) to the input's type.

    The type is the declared one for our nodes, else the type of the value the
    template holds. A template int may stand for a FLOAT widget (JSON cannot tell
    25 from 25.0), so for other nodes a fractional number is kept as a float there.
    """
    if declared is float and not isinstance(current, bool):
        current = float(current) if isinstance(current, (int, float)) else 0.0
    elif declared is int and not isinstance(current, bool):
        current = int(current) if isinstance(current, (int, float)) else 0
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise WorkflowError(f"{where}: {value!r} is not a boolean; use true or false")
    if isinstance(current, int):
        if isinstance(value, bool):
            raise WorkflowError(f"{where}: {value!r} is not a whole number; give an integer")
        if isinstance(value, int):
            return value
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise WorkflowError(f"{where}: {value!r} is not a whole number; give an integer") from None
        if not number.is_integer():
            if declared is None and math.isfinite(number):
                return number  # an unknown node's FLOAT widget saved as a JSON integer
            raise WorkflowError(f"{where}: {value!r} is not a whole number; give an integer")
        return int(number)
    if isinstance(current, float):
        if isinstance(value, bool):
            raise WorkflowError(f"{where}: {value!r} is not a number; give a decimal number")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise WorkflowError(f"{where}: {value!r} is not a number; give a decimal number")
        return number
    if isinstance(current, str):
        if isinstance(value, (dict, list)):
            raise WorkflowError(f"{where}: expected text, got {type(value).__name__}")
        return str(value)
    return value


def _label(prompt: dict, node_id: str, input_name: str) -> str:
    node = prompt[node_id]
    return f"{node_title(node) or node.get('class_type')}.{input_name} (node {node_id})"


def apply_params(prompt: dict, params: dict[str, Any]) -> dict:
    """A copy of the template with each parameter set on every input it names.

    An explicit "Title.input" that is a link is an error. An alias that reaches
    several of our nodes (fps lives on Inference, LipSyncCorrect and VideoEncode)
    sets the ones that hold a value and leaves links alone, since a link already
    carries the value from upstream; if every match is a link it is an error.
    """
    result = copy.deepcopy(prompt)
    for key, value in params.items():
        targets = _resolve(result, key)
        is_alias = key.strip() in NODE_INPUT_ALIASES
        settable = [(nid, name) for nid, name in targets if not is_link(result[nid]["inputs"][name])]
        if not is_alias and len(settable) < len(targets) or not settable:
            nid, name = next((t for t in targets if t not in settable), targets[0])
            raise WorkflowError(
                f"parameter {key!r}: {_label(result, nid, name)} is linked to another node's output; "
                "set the input on the node it comes from, or change the template"
            )
        for nid, name in settable:
            inputs = result[nid]["inputs"]
            declared = DECLARED_TYPES.get(name) if result[nid].get("class_type") in OUR_CLASSES else None
            where = f"parameter {key!r} ({_label(result, nid, name)})"
            inputs[name] = coerce(value, inputs[name], where, declared)
    return result


def get_param(prompt: dict, key: str) -> Any:
    """The value a parameter key reads in the template (first non-link match), e.g. to check a duration."""
    targets = _resolve(prompt, key)
    for nid, name in targets:
        value = prompt[nid]["inputs"][name]
        if not is_link(value):
            return value
    nid, name = targets[0]
    raise WorkflowError(f"parameter {key!r}: {_label(prompt, nid, name)} is linked to another node's output")


def resolution_of(prompt: dict) -> int | None:
    """SONIC_PreData.min_resolution, which decides both cost and host routing; None if absent or linked."""
    for node in prompt.values():
        if node.get("class_type") == "SONIC_PreData":
            value = node.get("inputs", {}).get("min_resolution")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
    return None


def set_resolution(prompt: dict, resolution: int) -> dict:
    """A copy with SONIC_PreData.min_resolution set (the OOM retry path lowers it a tier)."""
    if not any(n.get("class_type") == "SONIC_PreData" for n in prompt.values()):
        raise WorkflowError(
            "set_resolution: the workflow has no SONIC_PreData node; add one or do not set a resolution"
        )
    return apply_params(prompt, {"SONIC_PreData.min_resolution": int(resolution)})
