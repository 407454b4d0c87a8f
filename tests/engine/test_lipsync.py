"""LipSyncCorrect's engine: measure the offset of a talking-head clip and move the frames to fix it."""

from __future__ import annotations

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.lipsync import (
    audio_envelope,
    correct,
    deflicker,
    estimate_offset,
    mouth_box,
    mouth_motion,
)

from .lite.lite_clips import prepared, render

FPS = 25.0
FRAME = 1.0 / FPS


@pytest.fixture(scope="module")
def data():
    return prepared(6.0, seed=1, resolution=256)


@pytest.fixture(scope="module")
def clip(data):
    return render(data, seed=3)


@pytest.fixture(scope="module")
def openings(clip):
    return mouth_motion(clip).openings


def late_by(frames: np.ndarray, n: int) -> np.ndarray:
    """The same clip with the video n frames late (n < 0: early); the length stays the same."""
    return frames[np.clip(np.arange(len(frames)) - n, 0, len(frames) - 1)]


def measure(frames, data):
    return correct(frames, data.audio_16k, 16000, FPS, mode="auto").offset_seconds


def test_a_clip_in_sync_measures_zero(data, clip):
    assert abs(measure(clip, data)) < FRAME / 2


@pytest.mark.parametrize("seconds", [0.08, 0.2, -0.08, -0.2])
def test_injected_offsets_are_measured_and_corrected_within_a_frame(data, clip, seconds):
    shifted = late_by(clip, round(seconds * FPS))
    result = correct(shifted, data.audio_16k, 16000, FPS, mode="auto", max_offset=0.3)
    assert result.offset_seconds == pytest.approx(seconds, abs=FRAME)
    assert len(result.frames) == len(clip)
    assert abs(measure(result.frames, data)) <= FRAME


def test_an_offset_between_frames_is_resolved_below_a_frame(data, openings):
    delay = 0.06  # audio 60 ms late = video 1.5 frames early
    pad = round(delay * 16000)
    audio = np.concatenate([np.zeros(pad, np.float32), data.audio_16k[:-pad]])
    envelope = audio_envelope(audio, 16000, FPS, len(openings))
    assert estimate_offset(openings, envelope, FPS, 0.3).seconds == pytest.approx(-delay, abs=0.5 * FRAME)


def test_offsets_beyond_max_offset_are_not_searched(data, openings):
    envelope = audio_envelope(data.audio_16k, 16000, FPS, len(openings))
    late = openings[np.clip(np.arange(len(openings)) - 5, 0, None)]
    assert abs(estimate_offset(late, envelope, FPS, 0.1).seconds) <= 0.1 + 1e-9


def test_manual_mode_moves_the_frames_by_the_given_seconds(data, clip):
    result = correct(clip, data.audio_16k, 16000, FPS, mode="manual", offset=0.12)
    assert result.applied_frames == 3 and result.offset_seconds == pytest.approx(0.12)
    assert np.array_equal(result.frames[:-3], clip[3:])
    assert np.array_equal(result.frames[-3:], np.repeat(clip[-1:], 3, axis=0))  # last frame held
    early = correct(clip, data.audio_16k, 16000, FPS, mode="manual", offset=-0.08)
    assert np.array_equal(early.frames[2:], clip[:-2]) and np.array_equal(early.frames[0], clip[0])


def test_the_output_has_as_many_frames_as_the_audio_needs(data, clip):
    result = correct(clip[:140], data.audio_16k, 16000, FPS, mode="manual", offset=0.0)
    assert len(result.frames) == round(6.0 * FPS) == 150
    assert np.array_equal(result.frames[140:], np.repeat(clip[139:140], 10, axis=0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mode": "manual", "offset": 0.7}, "offset"),
        ({"mode": "sideways"}, "mode"),
        ({"max_offset": -0.1}, "max_offset"),
        ({"smoothing": 1.5}, "smoothing"),
    ],
)
def test_bad_settings_name_the_input(data, clip, kwargs, name):
    with pytest.raises(SonicInputError, match=rf"^{name}: "):
        correct(clip[:10], data.audio_16k, 16000, FPS, **kwargs)


def test_deflicker_steadies_brightness_but_never_smears_the_mouth(data, clip):
    rng = np.random.default_rng(0)
    jitter = rng.integers(-10, 11, size=(len(clip), 1, 1, 1))
    flickering = np.clip(clip.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
    box = mouth_box(data.landmarks)
    out = np.stack(list(deflicker(flickering, 1.0, [box] * len(clip))))
    steadiness = np.abs(np.diff(out.reshape(len(out), -1).mean(axis=1))).mean()
    before = np.abs(np.diff(flickering.reshape(len(clip), -1).mean(axis=1))).mean()
    assert steadiness < 0.3 * before
    x0, y0, x1, y1 = box
    change = out[:, y0:y1, x0:x1].astype(float) - flickering[:, y0:y1, x0:x1]
    # Inside the mouth only a uniform exposure shift is allowed: no blending with other frames.
    assert change.std(axis=(1, 2, 3)).max() < 1.0


def test_zero_smoothing_leaves_frames_untouched(clip):
    assert np.array_equal(np.stack(list(deflicker(clip[:5], 0.0))), clip[:5])


def test_auto_mode_without_a_face_passes_the_frames_through_and_says_so(data):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, size=(50, 64, 64, 3), dtype=np.uint8)
    result = correct(noise, data.audio_16k[:32000], 16000, FPS, mode="auto", smoothing=0.5)
    assert result.offset_seconds == 0.0 and result.applied_frames == 0
    np.testing.assert_array_equal(result.frames, noise)
    assert any("no face found" in note for note in result.notes)
    assert any("smoothing skipped" in note for note in result.notes)


def test_manual_mode_with_smoothing_and_no_face_still_returns_the_shifted_frames(data):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, size=(50, 64, 64, 3), dtype=np.uint8)
    result = correct(noise, data.audio_16k[:32000], 16000, FPS, mode="manual", offset=0.08, smoothing=0.5)
    assert result.applied_frames == 2 and len(result.frames) == 50
    assert any("smoothing skipped" in note for note in result.notes)


def test_smoothing_stays_cancellable(data, clip):
    class Counting:
        total = 0
        calls = 0

        def update(self, n=1):
            pass

        def check_cancel(self):
            self.calls += 1

    plain, smoothed = Counting(), Counting()
    correct(clip, data.audio_16k, 16000, FPS, mode="manual", smoothing=0.0, progress=plain)
    correct(clip, data.audio_16k, 16000, FPS, mode="manual", smoothing=0.5, progress=smoothed)
    assert smoothed.calls - plain.calls >= len(clip) // 16


def _talking_drawn_face(seconds: float, seed: int) -> np.ndarray:
    """An anime-style face (tests/faceset.py) whose drawn lips open with the syllables of
    lite_clips.speech_like(seconds, seed): [N, 256, 256, 3] uint8 at 25 fps."""
    import cv2

    from tests import faceset

    from .lite.lite_clips import speech_envelope

    base = faceset.drawn_anime_face(512)
    frames = []
    for opening in np.convolve(speech_envelope(seconds, FPS, seed), [0.25, 0.5, 0.25], mode="same"):
        face = base.copy()
        cv2.ellipse(face, (256, 381), (38, 16), 0, 0, 360, (250, 220, 200), -1, cv2.LINE_AA)
        gap = int(2 + 18 * opening)
        cv2.ellipse(
            face, (256, 381 + gap // 2), (27, gap // 2 + 1), 0, 0, 360, (110, 30, 45), -1, cv2.LINE_AA
        )
        cv2.ellipse(face, (256, 379), (30, 5), 0, 180, 360, (200, 100, 110), -1, cv2.LINE_AA)
        cv2.ellipse(face, (256, 383 + gap), (26, 6), 0, 0, 180, (210, 120, 125), -1, cv2.LINE_AA)
        frames.append(cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def test_the_mouth_of_a_drawn_face_dlib_cannot_find_is_measured():
    # Many Sonic users animate drawn characters. dlib's HOG finds no face in these frames, so
    # LipSyncCorrect measured nothing; the face mesh it uses now follows the drawn lips.
    from comfyui_sonic.nodes.engine.face import default_analyzer

    from .lite.lite_clips import RATE, speech_like

    clip, audio = _talking_drawn_face(5.0, seed=2), speech_like(5.0, seed=2)
    dlib = correct(clip, audio, RATE, FPS, mode="auto", analyzer=default_analyzer())
    assert any("no face found" in note for note in dlib.notes)
    for frames in (0, 2, -3):
        result = correct(late_by(clip, frames), audio, RATE, FPS, mode="auto", max_offset=0.3)
        assert result.offset_seconds == pytest.approx(frames * FRAME, abs=FRAME)
        assert not any("no face found" in note for note in result.notes)
