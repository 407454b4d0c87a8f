"""SONIC_PreData used the way a ComfyUI graph uses it: core IMAGE + core AUDIO in, SONIC_DATA out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.types import SonicData
from comfyui_sonic.nodes.pre_data import SONIC_PreData


def comfy_image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).float().div(255).unsqueeze(0)


def comfy_audio(seconds: float, rate: int = 44100, channels: int = 2) -> dict:
    t = torch.arange(round(seconds * rate)) / rate
    wave = 0.3 * torch.sin(2 * torch.pi * 180 * t)
    return {"waveform": wave.repeat(1, channels, 1), "sample_rate": rate}


def test_every_input_has_a_tooltip_and_the_output_is_sonic_data():
    spec = SONIC_PreData.INPUT_TYPES()["required"]
    assert list(spec) == [
        "image",
        "audio",
        "duration",
        "min_resolution",
        "expand_ratio",
        "face_select",
        "face_index",
        "detector",
        "on_mismatch",
        "face_threshold",
    ]
    assert all(options.get("tooltip") for _, options in spec.values())
    assert spec["min_resolution"][1]["step"] == 64 and spec["min_resolution"][1]["default"] == 512
    assert spec["duration"][1]["default"] == 0.0 and spec["expand_ratio"][1]["default"] == 0.5
    assert spec["detector"][1]["default"] == "blazeface" and spec["face_threshold"][1]["default"] == 0.5
    assert SONIC_PreData.RETURN_TYPES == ("SONIC_DATA",) and SONIC_PreData.CATEGORY == "Sonic"


def test_a_portrait_and_speech_become_sonic_data(face_image):
    out = SONIC_PreData().prepare(
        image=comfy_image(face_image),
        audio=comfy_audio(1.5),
        duration=0.0,
        min_resolution=256,
        expand_ratio=0.5,
    )
    (data,) = out["result"]
    assert isinstance(data, SonicData)
    assert "256x256" in out["ui"]["text"][-1]  # shown on the node by web/sonic.js
    assert data.image.shape == (256, 256, 3) and data.audio_16k.shape == (24000,)
    assert data.duration == pytest.approx(1.5) and data.detector == "blazeface"
    assert data.audio.samples.shape == (2, round(1.5 * 44100))


def test_an_rgba_image_tensor_is_accepted(face_image):
    rgba = torch.cat([comfy_image(face_image), torch.ones(1, *face_image.shape[:2], 1)], dim=-1)
    (data,) = SONIC_PreData().prepare(image=rgba, audio=comfy_audio(0.5), min_resolution=256)["result"]
    assert data.image.shape == (256, 256, 3)


def test_a_corrected_duration_is_shown_on_the_node(face_image):
    out = SONIC_PreData().prepare(
        image=comfy_image(face_image), audio=comfy_audio(1.0), duration=4.0, min_resolution=256
    )
    (data,) = out["result"]
    assert data.duration == pytest.approx(1.0)
    assert "does not match the audio" in out["ui"]["text"][0]


@pytest.mark.parametrize(
    ("overrides", "input_name"),
    [
        ({"duration": float("nan")}, "duration"),
        ({"duration": -2.0}, "duration"),
        ({"min_resolution": 500}, "min_resolution"),
        ({"face_threshold": 1.5}, "face_threshold"),
        ({"face_threshold": float("nan")}, "face_threshold"),
        ({"image": torch.zeros(1, 1, 1, 3)}, "image"),
        ({"image": torch.zeros(1, 1, 1, 3).expand(1, 20000, 20000, 3)}, "image"),
        ({"image": torch.full((1, 128, 128, 3), 0.5)}, "image"),
        ({"audio": {"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}}, "audio"),
        ({"audio": {"waveform": torch.zeros(1, 1, 800), "sample_rate": 16000}}, "audio"),
        (
            {"audio": {"waveform": torch.zeros(1, 1, 1).expand(1, 1, 16000 * 601), "sample_rate": 16000}},
            "audio",
        ),
    ],
    ids=[
        "nan-duration",
        "negative-duration",
        "min_resolution-500",
        "face_threshold-1.5",
        "nan-face_threshold",
        "1x1",
        "20000x20000",
        "no-face",
        "empty-audio",
        "0.05s-audio",
        "601s-audio",
    ],
)
def test_bad_input_is_one_line_naming_the_input(face_image, overrides, input_name):
    args = {"image": comfy_image(face_image), "audio": comfy_audio(1.0), "min_resolution": 256, **overrides}
    with pytest.raises(SonicInputError) as excinfo:
        SONIC_PreData().prepare(**args)
    message = str(excinfo.value)
    assert message.startswith(f"{input_name}: ") and "\n" not in message and "; " in message


def test_a_portrait_tensor_in_0_to_255_says_the_image_must_be_0_to_1(face_image):
    # Before the check the tensor was clamped to a white square and the error was "no face found".
    image = torch.from_numpy(face_image).float().unsqueeze(0)  # forgot .div(255)
    with pytest.raises(SonicInputError) as excinfo:
        SONIC_PreData().prepare(image=image, audio=comfy_audio(1.0), min_resolution=256)
    message = str(excinfo.value)
    assert (
        message.startswith("image: ")
        and "must be floats in 0..1" in message
        and "divide it by 255" in message
    )


def test_a_nan_expand_ratio_is_refused_by_name(face_image):
    with pytest.raises(SonicInputError, match="^expand_ratio: "):
        SONIC_PreData().prepare(
            image=comfy_image(face_image),
            audio=comfy_audio(1.0),
            min_resolution=256,
            expand_ratio=float("nan"),
        )


def test_face_threshold_decides_whether_a_faint_face_is_taken(face_image):
    # The astronaut's BlazeFace confidence is ~0.94: above the default, below a strict 0.95.
    args = {"image": comfy_image(face_image), "audio": comfy_audio(0.5), "min_resolution": 256}
    (data,) = SONIC_PreData().prepare(**args, face_threshold=0.5)["result"]
    assert data.detector == "blazeface"
    with pytest.raises(SonicInputError, match="^image: no face found"):
        SONIC_PreData().prepare(**args, face_threshold=0.95)
