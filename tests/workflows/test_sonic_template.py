"""The sonic template runs end to end through the embedded executor with tiny random weights."""

from __future__ import annotations

import json
from pathlib import Path

from comfyui_sonic.nodes.engine.sonic import write_random_checkpoint
from comfyui_sonic.runner.embedded import run_embedded

from tests.conftest import speech_like

ROOT = Path(__file__).resolve().parents[2]


def test_sonic_fast_template_renders_with_tiny_weights(tmp_path, face_file):
    import av
    import soundfile

    speech_file = tmp_path / "short.wav"
    soundfile.write(
        speech_file, speech_like(0.8, 16000), 16000
    )  # short: the tiny model still runs every stage

    paths = write_random_checkpoint(tmp_path / "models", config="tiny")
    prompt = json.loads((ROOT / "workflows" / "api" / "sonic_sonic_fast_api.json").read_text())
    nodes = {n["class_type"]: n["inputs"] for n in prompt.values()}
    nodes["LoadImage"]["image"] = str(face_file)
    nodes["LoadAudio"]["audio"] = str(speech_file)
    nodes["SONIC_ModelLoader"].update(model_dir=str(paths["model_dir"]), dtype="fp32", device="cpu")
    nodes["SONIC_PreData"]["min_resolution"] = 256
    nodes["SONIC_Inference"]["inference_steps"] = 2

    files = run_embedded(prompt, tmp_path / "out")

    assert len(files) == 1
    with av.open(str(files[0])) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height) == (256, 256)
    assert frames == 20  # 0.8 s at 25 fps
