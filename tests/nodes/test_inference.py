"""SONIC_ModelLoader + SONIC_Inference used the way a ComfyUI graph uses them (lite backend).

The frames come out as SONIC_FRAMES: lite frames are rendered when the next node reads them
(nothing stored), and Sonic Frames to IMAGE turns them into a core IMAGE batch."""

from __future__ import annotations

import pytest
import torch
from comfyui_sonic.nodes.engine.frames import FrameSource, live_stores
from comfyui_sonic.nodes.frames_io import SONIC_FramesToImage
from comfyui_sonic.nodes.inference import SONIC_Inference
from comfyui_sonic.nodes.model_loader import SONIC_ModelLoader
from comfyui_sonic.nodes.pre_data import SONIC_PreData

from tests.conftest import speech_like


@pytest.fixture
def prepared(face_image):
    image = torch.from_numpy(face_image).float().div(255).unsqueeze(0)
    audio = {"waveform": torch.from_numpy(speech_like(1.2, 16000)).reshape(1, 1, -1), "sample_rate": 16000}
    data = SONIC_PreData().prepare(
        image=image, audio=audio, duration=0.0, min_resolution=256, expand_ratio=0.5
    )["result"][0]
    return data


def run(data, **overrides):
    (model,) = SONIC_ModelLoader().load(backend="lite")["result"]
    args = dict(seed=0, inference_steps=25, dynamic_scale=1.0, motion_scale=1.0, fps=25.0)
    args.update(overrides)
    return SONIC_Inference().generate(model=model, data=data, **args)


def as_image(frames: FrameSource) -> torch.Tensor:
    return SONIC_FramesToImage().convert(frames)[0]


def test_frames_carry_fps_audio_and_face_and_become_a_comfy_image_batch(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIC_FRAMES_DIR", str(tmp_path))
    frames, audio, fps = run(prepared)
    assert isinstance(frames, FrameSource) and frames.shape == (30, *prepared.image.shape[:2], 3)
    assert frames.info.fps == fps == 25.0 and frames.info.face_box == prepared.face_box
    assert frames.info.in_sync and frames.info.origin == "lite"
    assert live_stores(tmp_path) == []  # lite renders when read: nothing is stored
    images, image_audio, image_fps = SONIC_FramesToImage().convert(frames)
    assert images.dtype == torch.float32 and images.shape == (30, *prepared.image.shape[:2], 3)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0 and image_fps == 25.0
    assert audio["waveform"].shape[0] == 1
    assert audio["waveform"].shape[-1] / audio["sample_rate"] == pytest.approx(30 / 25.0, abs=1e-3)
    assert torch.equal(image_audio["waveform"], audio["waveform"])


def test_seed_zero_is_a_seed_and_the_same_seed_repeats(prepared):
    a = run(prepared, seed=0)[0]
    b = run(prepared, seed=0)[0]
    c = run(prepared, seed=1)[0]
    assert torch.equal(as_image(a), as_image(b))
    assert torch.equal(as_image(a), as_image(a))  # read twice, rendered twice: the same frames
    assert not torch.equal(as_image(a), as_image(c))


def test_paste_back_returns_frames_the_size_of_the_original_image(prepared):
    frames = run(prepared, paste_back=True)[0]
    assert frames.shape[1:3] == prepared.original.shape[:2]
    assert as_image(frames).shape[1:3] == prepared.original.shape[:2]
    x0, y0, x1, y1 = frames.info.face_box  # the face moved into the original picture's coordinates
    assert prepared.crop_box[0] <= x0 < x1 <= prepared.crop_box[2]
    assert prepared.crop_box[1] <= y0 < y1 <= prepared.crop_box[3]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("motion_scale", float("nan"), "motion_scale: nan is not a finite number; give a value from 0 to 2"),
        (
            "dynamic_scale",
            float("inf"),
            "dynamic_scale: inf is not a finite number; give a value from 0 to 2",
        ),
        ("fps", 1000.0, "fps: 1000.0 is above the maximum of 60; give a value from 1 to 60"),
    ],
)
def test_a_bad_number_is_a_one_line_input_error_before_any_frame(prepared, monkeypatch, name, value, says):
    # A linked value or a NaN reaches the node unvalidated by ComfyUI; before this check a NaN
    # motion_scale ended in a numpy LinAlgError and NaN dynamic_scale rendered silently.
    from comfyui_sonic.nodes import inference
    from comfyui_sonic.nodes.engine.errors import SonicInputError

    monkeypatch.setattr(inference, "make_source", lambda *a: pytest.fail("rendered anyway"))
    with pytest.raises(SonicInputError) as excinfo:
        run(prepared, **{name: value})
    assert str(excinfo.value) == says
