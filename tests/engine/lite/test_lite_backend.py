"""The lite backend as SONIC_Inference uses it: frames from a prepared portrait and its speech."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.lipsync import mouth_box, mouth_opening, track_landmarks
from comfyui_sonic.nodes.engine.lite.backend import LiteBackend
from comfyui_sonic.nodes.engine.progress import NullProgress
from comfyui_sonic.nodes.engine.types import GenerationParams

from .lite_clips import prepared, render, speech_envelope

SECONDS = 4.0


@pytest.fixture(scope="module")
def data():
    return prepared(SECONDS, seed=0, resolution=256)


@pytest.fixture(scope="module")
def clip(data):
    return render(data, seed=7)


@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0])
def test_frame_count_is_duration_times_fps_in_uint8_chunks(data, fps):
    progress = NullProgress()
    backend = LiteBackend(chunk_frames=16)
    chunks = list(backend.generate(data, GenerationParams(fps=fps), progress))
    total = sum(len(c) for c in chunks)
    assert (
        total
        == round(SECONDS * fps)
        == data.frame_count(fps)
        == backend.progress_total(data, GenerationParams(fps=fps))
    )
    assert all(c.dtype == np.uint8 and c.shape[1:] == data.image.shape for c in chunks)
    assert max(len(c) for c in chunks) <= 16
    assert progress.done == total


def test_same_seed_gives_the_same_frames_and_another_seed_does_not(data, clip):
    assert np.array_equal(render(data, seed=7), clip)
    assert not np.array_equal(render(data, seed=8), clip)


def test_mouth_follows_the_speech_and_is_closed_in_silence(data, clip):
    opening = mouth_opening(track_landmarks(clip))
    speaking = speech_envelope(SECONDS, 25.0, seed=0)
    assert np.corrcoef(opening, speaking)[0, 1] > 0.7
    # The astronaut smiles with her teeth showing; in silence her lips close.
    in_the_photo = mouth_opening(track_landmarks([data.image]))[0]
    silent = opening[:5]  # the clip starts with 0.3 s of silence
    assert np.all(silent < 0.04) and in_the_photo > 0.1
    assert opening[speaking > 0].mean() > 0.15


def test_a_portrait_with_closed_lips_is_left_as_it_is_in_silence(data):
    closed_lips = render(data, seed=7, motion_scale=0.0)[0]  # the smile with the lips closed
    portrait = replace(data, image=closed_lips, landmarks=None)  # landmarks found again
    still = render(portrait, seed=7, motion_scale=0.0)
    x0, y0, x1, y1 = mouth_box(track_landmarks([closed_lips])[0])
    assert np.array_equal(still[0, y0:y1, x0:x1], closed_lips[y0:y1, x0:x1])
    assert not np.array_equal(still[12, y0:y1, x0:x1], closed_lips[y0:y1, x0:x1])  # it speaks


def test_motion_scale_zero_keeps_the_head_still(data):
    still = render(data, seed=7, motion_scale=0.0)
    moving = render(data, seed=7, motion_scale=1.0)
    hair = np.s_[:, : data.face_box[1] // 2, :]  # the hair, well above the brows: moves only with the head
    assert np.array_equal(still[hair], np.broadcast_to(data.image[hair[1:]], still[hair].shape))
    assert np.abs(moving[hair].astype(int) - data.image[hair[1:]]).max() > 10


def test_dynamic_scale_scales_the_mouth(data):
    means = []
    for scale in (0.5, 1.0, 1.5):
        frames = render(data, seed=7, motion_scale=0.0, dynamic_scale=scale)
        means.append(mouth_opening(track_landmarks(frames)).mean())
    assert means[0] < means[1] < means[2]
    assert (means[2] - means[1]) > 0.3 * (means[1] - means[0])


def test_cancel_stops_between_chunks(data):
    class Cancel(Exception):
        pass

    class StopAfterTwo(NullProgress):
        def check_cancel(self):
            if self.done >= 32:
                raise Cancel

    progress = StopAfterTwo()
    chunks = LiteBackend(chunk_frames=16).generate(data, GenerationParams(), progress)
    with pytest.raises(Cancel):
        for _ in chunks:
            pass
    assert progress.done == 32


def test_a_crop_without_a_face_is_a_clear_input_error(data):
    blank = replace(data, image=np.full_like(data.image, 128), landmarks=None)
    with pytest.raises(SonicInputError, match="image: no face found"):
        LiteBackend().generate(blank, GenerationParams(), NullProgress())


def test_an_open_mouth_shows_a_dark_cavity_not_stretched_skin(data):
    closed_lips = render(data, seed=7, motion_scale=0.0)[0]
    portrait = replace(data, image=closed_lips, landmarks=None)
    frames = render(portrait, seed=7, motion_scale=0.0)
    points = track_landmarks(frames)
    widest = int(np.argmax(mouth_opening(points)))
    upper, lower = points[widest, 62], points[widest, 66]
    x, y = np.round(upper + 0.7 * (lower - upper)).astype(int)  # low in the opening, below the teeth
    luma = frames[widest].astype(float).mean(axis=2)
    cheek = luma[int(points[widest, 29, 1]), int(points[widest, 31, 0]) - 5]
    assert luma[y - 1 : y + 2, x - 1 : x + 2].mean() < 0.5 * cheek
