"""The fake's /object_info: the pack's real node schemas plus the few core nodes a Sonic graph uses.

Mirrors ComfyUI server.py `node_info()`: for every class in NODE_CLASS_MAPPINGS,
{input: INPUT_TYPES(), input_order, output: RETURN_TYPES, output_is_list,
output_name, name, display_name, description, python_module, category,
output_node}. Our own nodes come from `comfyui_sonic.NODE_CLASS_MAPPINGS`; while
the pack is still being written (or a class fails to describe itself) a minimal
stand-in schema from DESIGN.md section 3 is used, so the runner can be tested
against the node names it will meet.
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

SONIC_NODES = ("SONIC_ModelLoader", "SONIC_PreData", "SONIC_Inference", "LipSyncCorrect", "VideoEncode")
# Classes whose execution saves a video file (output nodes in the fake's simulated execution).
VIDEO_OUTPUT_NODES = ("VideoEncode", "SaveVideo", "VHS_VideoCombine")


def _entry(
    name: str,
    required: dict,
    outputs: tuple,
    *,
    optional: dict | None = None,
    output_node: bool = False,
    category: str = "Sonic",
    module: str = "custom_nodes.comfyui_sonic",
) -> dict:
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(outputs),
        "output_is_list": [False] * len(outputs),
        "output_name": list(outputs),
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": module,
        "category": category,
        "output_node": output_node,
    }


def core_nodes(input_files: list[str]) -> dict[str, dict]:
    """Core ComfyUI nodes a Sonic graph may use (LoadImage/LoadAudio list the input folder like the real ones)."""
    return {
        "LoadImage": _entry(
            "LoadImage",
            {"image": [sorted(input_files), {"image_upload": True}]},
            ("IMAGE", "MASK"),
            category="image",
            module="nodes",
        ),
        "LoadAudio": _entry(
            "LoadAudio",
            {"audio": [sorted(input_files), {"audio_upload": True}]},
            ("AUDIO",),
            category="audio",
            module="comfy_extras.nodes_audio",
        ),
        "SaveVideo": _entry(
            "SaveVideo",
            {
                "video": ["VIDEO", {}],
                "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                "format": [["auto", "mp4"], {"default": "auto"}],
                "codec": [["auto", "h264"], {"default": "auto"}],
            },
            (),
            output_node=True,
            category="image/video",
            module="comfy_extras.nodes_video",
        ),
        "VHS_VideoCombine": _entry(
            "VHS_VideoCombine",
            {
                "images": ["IMAGE", {}],
                "frame_rate": ["FLOAT", {"default": 8}],
                "loop_count": ["INT", {"default": 0}],
                "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
                "format": [["image/gif", "video/h264-mp4"], {}],
                "pingpong": ["BOOLEAN", {"default": False}],
                "save_output": ["BOOLEAN", {"default": True}],
            },
            ("VHS_FILENAMES",),
            optional={"audio": ["AUDIO", {}]},
            output_node=True,
            category="Video Helper Suite",
            module="custom_nodes.ComfyUI-VideoHelperSuite",
        ),
    }


def stand_in_sonic_nodes(model_files: list[str]) -> dict[str, dict]:
    """Minimal schemas of our five nodes (DESIGN.md section 3) for when the pack does not provide them yet."""
    checkpoints = list(model_files) or ["none"]
    return {
        "SONIC_ModelLoader": _entry(
            "SONIC_ModelLoader",
            {
                "backend": [["lite", "sonic"], {"default": "lite"}],
                "checkpoint": [checkpoints, {}],
                "dtype": [["auto", "fp16", "bf16", "fp32"], {"default": "auto"}],
                "device": [["auto", "cuda", "cpu"], {"default": "auto"}],
            },
            ("SONIC_MODEL",),
        ),
        "SONIC_PreData": _entry(
            "SONIC_PreData",
            {
                "image": ["IMAGE", {}],
                "audio": ["AUDIO", {}],
                "duration": ["FLOAT", {"default": 0.0}],
                "min_resolution": ["INT", {"default": 512}],
                "expand_ratio": ["FLOAT", {"default": 0.5}],
            },
            ("SONIC_DATA",),
        ),
        "SONIC_Inference": _entry(
            "SONIC_Inference",
            {
                "model": ["SONIC_MODEL", {}],
                "data": ["SONIC_DATA", {}],
                "seed": ["INT", {"default": 1}],
                "inference_steps": ["INT", {"default": 25}],
                "dynamic_scale": ["FLOAT", {"default": 1.0}],
                "motion_scale": ["FLOAT", {"default": 1.0}],
                "fps": ["FLOAT", {"default": 25.0}],
            },
            ("IMAGE", "AUDIO", "FLOAT"),
        ),
        "LipSyncCorrect": _entry(
            "LipSyncCorrect",
            {"images": ["IMAGE", {}], "audio": ["AUDIO", {}], "fps": ["FLOAT", {"default": 25.0}]},
            ("IMAGE", "AUDIO", "FLOAT"),
        ),
        "VideoEncode": _entry(
            "VideoEncode",
            {
                "images": ["IMAGE", {}],
                "fps": ["FLOAT", {"default": 25.0}],
                "crf": ["INT", {"default": 19}],
                "filename_prefix": ["STRING", {"default": "sonic/sonic"}],
            },
            ("VIDEO", "STRING"),
            optional={"audio": ["AUDIO", {}]},
            output_node=True,
        ),
    }


def pack_node_info(node_class: type, name: str, display: str | None) -> dict:
    """Describe one V1 node class the way ComfyUI's server.py node_info() does."""
    inputs = node_class.INPUT_TYPES()
    outputs = tuple(getattr(node_class, "RETURN_TYPES", ()))
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "is_input_list": getattr(node_class, "INPUT_IS_LIST", False),
        "output": list(outputs),
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(node_class, "RETURN_NAMES", outputs)),
        "name": name,
        "display_name": display or name,
        "description": getattr(node_class, "DESCRIPTION", ""),
        "python_module": "custom_nodes.comfyui_sonic",
        "category": getattr(node_class, "CATEGORY", "sd"),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
    }


def pack_nodes() -> dict[str, dict]:
    """The pack's real schemas (a fresh copy each call; the pack is described once per process)."""
    return copy.deepcopy(_pack_nodes_once())


@functools.lru_cache(maxsize=1)
def _pack_nodes_once() -> dict[str, dict]:
    """A class that fails to describe itself is skipped (ComfyUI logs and skips too)."""
    try:
        import comfyui_sonic as pack
    except Exception as exc:  # the pack may be mid-edit while other engineers work
        log.warning("fake ComfyUI: cannot import comfyui_sonic (%s); using stand-in node schemas", exc)
        return {}
    out = {}
    for name, cls in getattr(pack, "NODE_CLASS_MAPPINGS", {}).items():
        try:
            out[name] = pack_node_info(cls, name, getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", {}).get(name))
        except Exception as exc:
            log.warning("fake ComfyUI: node %s failed to describe itself: %s", name, exc)
    return out


def _is_file_choice_input(name: str) -> bool:
    return any(word in name.lower() for word in ("ckpt", "checkpoint", "model", "weights", "unet"))


def build_object_info(
    input_files: list[str], model_files: list[str] | None, override: dict | None, use_pack: bool = True
) -> dict:
    """object_info = override, or core nodes + the pack's nodes (+ stand-ins for missing Sonic nodes)."""
    if override is not None:
        return override
    info = core_nodes(input_files)
    info.update(stand_in_sonic_nodes(model_files or []))
    if use_pack:
        info.update(pack_nodes())
    if model_files is not None:  # pretend the host has these weights: they become the loader's file choices
        loader = info.get("SONIC_ModelLoader", {}).setdefault("input", {})
        replaced = False
        for section in loader.values():
            for key, spec in section.items():
                if (
                    _is_file_choice_input(key)
                    and isinstance(spec, (list, tuple))
                    and isinstance(spec[0], list)
                ):
                    section[key] = [list(model_files), *spec[1:]]
                    replaced = True
        if not replaced:  # the pack's loader names its inputs differently: offer the files anyway
            loader.setdefault("optional", {})["model_file"] = [list(model_files), {}]
    return info
