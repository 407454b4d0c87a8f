"""Job inputs for runs against the fake host: a graph its /object_info accepts, a face, a speech clip.

Shared by the runner tests and benchmarks/bench_runner.py (TEST-ONLY helpers, not ComfyUI behaviour).
"""

from __future__ import annotations

import json
import urllib.request
import wave
from pathlib import Path

_VALUE_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
GRAPH = [  # (node id, class, title, fixed inputs)
    ("1", "LoadImage", "Portrait", {}),
    ("2", "LoadAudio", "Speech", {}),
    ("3", "SONIC_ModelLoader", "Model", {}),
    ("4", "SONIC_PreData", "Prepare", {"duration": 0.0, "min_resolution": 512}),
    ("5", "SONIC_Inference", "Sonic", {}),
    ("6", "VideoEncode", "Encode", {}),
]


def template_for(url: str, headers: dict[str, str] | None = None) -> dict:
    """A Sonic API-format graph that passes the host's validation: every required input the host's
    /object_info declares is filled (links by type from the nodes before it, values by default)."""
    request = urllib.request.Request(url + "/object_info", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        info = json.load(resp)
    prompt: dict = {}
    for nid, cls, title, fixed in GRAPH:
        spec = info[cls]["input"]
        inputs = dict(fixed)
        for name, decl in spec.get("required", {}).items():
            if name in inputs:
                continue
            kind, opts = decl[0], (decl[1] if len(decl) > 1 else {})
            if isinstance(kind, list):
                inputs[name] = kind[0] if kind else ""
            elif kind in _VALUE_TYPES or "default" in opts:
                inputs[name] = opts.get("default", 0 if kind in ("INT", "FLOAT") else "")
            else:
                src = next(
                    p
                    for p, _, _, _ in reversed(GRAPH[: int(nid) - 1])
                    if kind in info[prompt[p]["class_type"]]["output"]
                )
                inputs[name] = [src, info[prompt[src]["class_type"]]["output"].index(kind)]
        for name, decl in spec.get(
            "optional", {}
        ).items():  # feed optional links (e.g. audio into the encoder)
            kind = decl[0]
            if isinstance(kind, str) and kind not in _VALUE_TYPES and name not in inputs:
                for p, _, _, _ in reversed(GRAPH[: int(nid) - 1]):
                    outs = info[prompt[p]["class_type"]]["output"]
                    if kind in outs:
                        inputs[name] = [p, outs.index(kind)]
                        break
        prompt[nid] = {"class_type": cls, "inputs": inputs, "_meta": {"title": title}}
    return prompt


def write_job_files(folder: Path, url: str, headers: dict[str, str] | None = None) -> tuple[Path, Path, Path]:
    """(workflow, face.png, speech.wav) in `folder`: a flat 64 px "face" and 0.5 s of silence."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (180, 140, 120)).save(folder / "face.png")
    with wave.open(str(folder / "speech.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 8000)
    workflow = folder / "sonic_api.json"
    workflow.write_text(json.dumps(template_for(url, headers)))
    return workflow, folder / "face.png", folder / "speech.wav"
