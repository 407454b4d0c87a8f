"""The embedded executor: an API-format workflow run in-process, no ComfyUI server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from comfyui_sonic.runner.embedded import WorkflowError, execution_order, node_classes, run_embedded

ROOT = Path(__file__).resolve().parents[2]
LITE_FAST = ROOT / "workflows" / "api" / "sonic_lite_fast_api.json"


def lite_prompt(face_file, speech_file) -> dict:
    prompt = json.loads(LITE_FAST.read_text())
    by_class = {n["class_type"]: n for n in prompt.values()}
    by_class["LoadImage"]["inputs"]["image"] = str(face_file)
    by_class["LoadAudio"]["inputs"]["audio"] = str(speech_file)
    by_class["SONIC_PreData"]["inputs"]["min_resolution"] = 256
    return prompt


def test_runs_the_lite_template_to_an_mp4(tmp_path, face_file, speech_file):
    import av

    events = []
    files = run_embedded(lite_prompt(face_file, speech_file), tmp_path / "out", progress_sink=events.append)
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].stat().st_size > 0
    assert files[0].is_relative_to(tmp_path / "out")
    with av.open(str(files[0])) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
    assert frames == 50  # 2.0 s at 25 fps
    assert any(e["event"] == "progress" for e in events)
    assert [e["title"] for e in events if e["event"] == "node"][-1] == "Save MP4"
    # What ComfyUI shows on each node comes as its `executed` event: the face crop, the saved file.
    shown = {e["title"]: e["output"] for e in events if e["event"] == "executed"}
    assert shown["Prepare"]["text"][-1].startswith("face crop (")
    assert shown["Save MP4"]["images"][0]["filename"] == files[0].name


# What the lite template loads, seen from a fresh interpreter (this one has torch from other tests).
NO_TORCH = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import tests.conftest  # noqa: F401  (the pack importable as comfyui_sonic)
from tests.runner.test_embedded import lite_prompt
from comfyui_sonic.runner.embedded import run_embedded
files = run_embedded(lite_prompt(sys.argv[2], sys.argv[3]), Path(sys.argv[4]))
heavy = ("torch", "diffusers", "transformers", "dlib", "comfyui_sonic.nodes.engine.sonic.backend")
print(len(files), *sorted(m for m in heavy if m in sys.modules))
"""


def test_a_lite_render_never_imports_torch_or_the_sonic_backend(tmp_path, face_file, speech_file):
    """Start-up of every lite job: torch alone costs most of a second and ~200 MB (issue 16)."""
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(ROOT), str(face_file), str(speech_file), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1"], result.stdout  # one MP4, none of the heavy modules


def test_core_values_are_arrays_while_it_runs_and_torch_again_after(
    tmp_path, face_file, speech_file, monkeypatch
):
    """Inside ComfyUI other nodes need torch IMAGE/AUDIO; the embedded setting must not leak out."""
    import numpy as np
    import torch
    from comfyui_sonic.nodes import comfy_bridge
    from comfyui_sonic.nodes.lipsync_correct import LipSyncCorrect
    from comfyui_sonic.runner import embedded

    seen = {}
    real = LipSyncCorrect.correct

    def spy(self, **kwargs):
        out = real(self, **kwargs)
        seen["lipsync_audio"] = out["result"][1]["waveform"]
        return out

    twins = embedded.LoadImage().load(str(face_file)), embedded.LoadAudio().load(str(speech_file))
    assert isinstance(twins[0][0], torch.Tensor) and isinstance(twins[1][0]["waveform"], torch.Tensor)
    monkeypatch.setattr(LipSyncCorrect, "correct", spy)
    run_embedded(lite_prompt(face_file, speech_file), tmp_path / "out")
    assert type(seen["lipsync_audio"]) is np.ndarray and seen["lipsync_audio"].shape[:2] == (1, 1)
    assert not comfy_bridge.array_values()
    with pytest.raises(FileNotFoundError):
        run_embedded(lite_prompt(tmp_path / "missing.png", speech_file), tmp_path / "out")
    assert not comfy_bridge.array_values()  # reset after a failed run too


def test_the_twins_give_what_core_loadimage_gives_in_either_form(face_file, speech_file, face_image):
    import numpy as np
    from comfyui_sonic.nodes import comfy_bridge
    from comfyui_sonic.runner import embedded

    tensor, mask = embedded.LoadImage().load(str(face_file))
    comfy_bridge.set_array_values(True)
    try:
        array, array_mask = embedded.LoadImage().load(str(face_file))
        audio = embedded.LoadAudio().load(str(speech_file))[0]
    finally:
        comfy_bridge.set_array_values(False)
    torch_audio = embedded.LoadAudio().load(str(speech_file))[0]
    assert array.dtype == np.float32 and array.shape == (1, *face_image.shape)
    np.testing.assert_array_equal(array, tensor.numpy())
    np.testing.assert_array_equal(array[0], face_image.astype(np.float32) / 255.0)
    assert array_mask.shape == array.shape[:3] and not array_mask.any()
    np.testing.assert_array_equal(array_mask, mask.numpy())
    assert audio["sample_rate"] == torch_audio["sample_rate"] == 22050
    np.testing.assert_array_equal(audio["waveform"], torch_audio["waveform"].numpy())


# Prepare, and Save MP4: lite frames stream, rendered while Save MP4 reads them, so Animate itself
# returns at once and makes no steps of its own.
@pytest.mark.parametrize("stop_in", ["4", "7"])
def test_a_cancel_stops_the_render_mid_node_and_leaves_no_file(tmp_path, face_file, speech_file, stop_in):
    """What `DELETE /v1/jobs/{id}` relies on: cancel() is asked at each step of the engine's loops."""
    from comfyui_sonic.runner.embedded import RenderCancelled

    seen: list[dict] = []
    asked = {"after": 0}

    def cancel() -> bool:
        steps = [e for e in seen if e["event"] == "progress" and e["node"] == stop_in]
        asked["after"] = len(steps)
        return bool(steps)  # as soon as the node has made one step

    with pytest.raises(RenderCancelled):
        run_embedded(
            lite_prompt(face_file, speech_file), tmp_path / "out", progress_sink=seen.append, cancel=cancel
        )
    assert asked["after"] == 1  # stopped at the very next step, not at the end of the node
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # no MP4, no .partial


def test_only_nodes_that_feed_an_output_run_and_after_their_inputs():
    prompt = json.loads(LITE_FAST.read_text())
    prompt["99"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "unused.png"},
        "_meta": {"title": "dangling"},
    }
    order = execution_order(prompt, node_classes())
    assert "99" not in order
    position = {node_id: i for i, node_id in enumerate(order)}
    for node_id in order:
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list):
                assert position[value[0]] < position[node_id]


def test_unknown_node_type_names_the_node_and_suggests_a_host():
    prompt = json.loads(LITE_FAST.read_text())
    prompt["5"]["class_type"] = "KSampler"
    with pytest.raises(WorkflowError, match=r"node 5 \(KSampler\): unknown node type.*--host"):
        execution_order(prompt, node_classes())


def test_a_cycle_is_reported():
    prompt = json.loads(LITE_FAST.read_text())
    prompt["4"]["inputs"]["image"] = ["6", 0]
    with pytest.raises(WorkflowError, match="cycle"):
        execution_order(prompt, node_classes())


def test_missing_required_input_names_node_and_input(tmp_path, face_file, speech_file):
    prompt = lite_prompt(face_file, speech_file)
    del prompt["5"]["inputs"]["seed"]
    with pytest.raises(WorkflowError, match=r"Animate: required input\(s\) seed missing"):
        run_embedded(prompt, tmp_path)


def test_missing_image_file_is_a_one_line_error(tmp_path, speech_file):
    prompt = lite_prompt(tmp_path / "nope.png", speech_file)
    with pytest.raises(
        FileNotFoundError, match=r"image: file not found: .*nope.png; pass an existing file with --image"
    ):
        run_embedded(prompt, tmp_path)


def test_cli_run_renders_in_process_and_prints_the_path(tmp_path, face_file, speech_file, capsys):
    from comfyui_sonic.runner.cli import main

    args = ["run", str(LITE_FAST), "--image", str(face_file), "--audio", str(speech_file)]
    code = main([*args, "-o", str(tmp_path), "--quiet", "--set", "min_resolution=256"])
    printed = capsys.readouterr().out.strip()
    assert code == 0 and printed.endswith(".mp4") and Path(printed).is_file()


def test_cli_run_without_weights_is_a_failed_job_with_one_line(tmp_path, face_file, speech_file, capsys):
    from comfyui_sonic.runner.cli import main

    sonic = ROOT / "workflows" / "api" / "sonic_sonic_fast_api.json"
    args = ["run", str(sonic), "--image", str(face_file), "--audio", str(speech_file), "-o", str(tmp_path)]
    code = main([*args, "--quiet", "--models", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "unet.pth not found in" in err[0] and str(tmp_path / "empty") in err[0]


def test_cli_run_without_the_engine_installed_says_what_to_install(
    tmp_path, face_file, speech_file, capsys, monkeypatch
):
    from comfyui_sonic.runner import embedded
    from comfyui_sonic.runner.cli import main

    def runner_only_install(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(embedded, "run_embedded", runner_only_install)
    args = [
        "run",
        str(LITE_FAST),
        "--image",
        str(face_file),
        "--audio",
        str(speech_file),
        "-o",
        str(tmp_path),
    ]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: torch" in err[0] and "--host" in err[0]


@pytest.fixture
def no_node_may_run(monkeypatch):
    """Every node function fails the test: validation must refuse the graph before any work."""
    for name, cls in node_classes().items():
        monkeypatch.setattr(cls, cls.FUNCTION, lambda *a, _n=name, **k: pytest.fail(f"{_n} ran"))


def test_a_value_above_the_schema_maximum_fails_before_any_node_runs(tmp_path, no_node_may_run):
    # `--set fps=1000` used to render 1000 frames per second of audio before the encoder refused it.
    from comfyui_sonic.runner.workflow import apply_params

    prompt = apply_params(json.loads(LITE_FAST.read_text()), {"fps": "1000"})
    with pytest.raises(WorkflowError) as excinfo:
        run_embedded(prompt, tmp_path / "out")
    assert str(excinfo.value) == (
        "Animate.fps (node 5): 1000.0 is above the maximum of 60; give a value from 1 to 60"
    )
    assert not (tmp_path / "out").exists()  # nothing was made


def test_nan_scales_are_refused_by_name_with_their_range(tmp_path, no_node_may_run):
    # NaN passes ComfyUI's own min/max check; NaN dynamic_scale rendered, NaN motion_scale crashed in numpy.
    prompt = json.loads(LITE_FAST.read_text())
    prompt["5"]["inputs"].update(dynamic_scale=float("nan"), motion_scale=float("nan"))
    with pytest.raises(WorkflowError) as excinfo:
        run_embedded(prompt, tmp_path)
    assert str(excinfo.value) == (
        "Animate.dynamic_scale (node 5): nan is not a finite number; give a value from 0 to 2 "
        "(also wrong: Animate.motion_scale (node 5))"
    )


@pytest.mark.parametrize(
    ("node", "name", "value", "says"),
    [
        ("7", "codec", "vp9", "Save MP4.codec (node 7): 'vp9' is not one of the choices; use one of: h264"),
        ("4", "min_resolution", 512.5, "Prepare.min_resolution (node 4): 512.5 is not a whole number"),
        ("4", "detector", 3, "Prepare.detector (node 4): 3 is not one of the choices"),
        ("6", "smoothing", -0.5, "Lip Sync.smoothing (node 6): -0.5 is below the minimum of 0"),
        (
            "7",
            "images",
            ["1", 1],
            "Save MP4.images (node 7): expects IMAGE but is linked to output 1 of Portrait, which gives MASK",
        ),
        (
            "7",
            "images",
            ["1", 5],
            "Save MP4.images (node 7): links to output 5 of Portrait, which has 2 output(s)",
        ),
        ("6", "audio", "speech.wav", "Lip Sync.audio (node 6): expects a link from a node's AUDIO output"),
    ],
)
def test_each_kind_of_bad_input_names_node_input_and_what_is_allowed(
    tmp_path, no_node_may_run, node, name, value, says
):
    prompt = json.loads(LITE_FAST.read_text())
    prompt[node]["inputs"][name] = value
    with pytest.raises(WorkflowError) as excinfo:
        run_embedded(prompt, tmp_path)
    assert str(excinfo.value).startswith(says) and "\n" not in str(excinfo.value)


def test_checked_values_reach_the_nodes_converted_as_comfyui_converts_them():
    from comfyui_sonic.runner.embedded import validate_inputs

    prompt = json.loads(LITE_FAST.read_text())
    prompt["7"]["inputs"]["crf"] = 23.0  # an INT saved as a float
    prompt["5"]["inputs"]["fps"] = 25  # a FLOAT saved as an integer (what ComfyUI's front end writes)
    classes = node_classes()
    values = validate_inputs(prompt, execution_order(prompt, classes), classes)
    assert values["7"]["crf"] == 23 and isinstance(values["7"]["crf"], int)
    assert values["5"]["fps"] == 25.0 and isinstance(values["5"]["fps"], float)
    assert "images" not in values["7"]  # links are resolved when the node runs
