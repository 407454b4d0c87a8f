"""LipSyncCorrect: measure and fix the audio/video offset of talking-head frames (any backend)."""

from __future__ import annotations

from typing import Any

from .engine.lipsync import MANUAL_RANGE, MAX_SEARCH, MODES


class LipSyncCorrect:
    """Thin node over engine.lipsync.correct(); shows the offset it measured or applied."""

    CATEGORY = "Sonic"
    FUNCTION = "correct"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "offset_seconds")
    OUTPUT_TOOLTIPS = (
        "The frames moved into sync (as many as the audio needs at this fps), optionally deflickered.",
        "The audio, unchanged: the frames were moved to match it.",
        "Auto: the measured offset in seconds (+ = the video was late). Manual: the offset applied.",
    )
    DESCRIPTION = (
        "Finds how far the mouth lags or leads the speech by correlating the lip opening with the "
        "audio loudness, and shifts the frames to fix it. Works on frames from any backend."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": (
                    "IMAGE",
                    {"tooltip": "Talking-head frames (one face, e.g. from SONIC_Inference)."},
                ),
                "audio": ("AUDIO", {"tooltip": "The speech the frames should follow."}),
                "fps": (
                    "FLOAT",
                    {
                        "default": 25.0,
                        "min": 1.0,
                        "max": 120.0,
                        "step": 0.01,
                        "tooltip": "Frame rate of the frames.",
                    },
                ),
                "mode": (
                    list(MODES),
                    {
                        "default": "auto",
                        "tooltip": "auto: measure the offset from the frames and fix it. manual: apply `offset`.",
                    },
                ),
                "offset": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": -MANUAL_RANGE,
                        "max": MANUAL_RANGE,
                        "step": 0.01,
                        "tooltip": "Manual mode: seconds the video is late (+) or early (-); the frames move "
                        "that much the other way.",
                    },
                ),
                "max_offset": (
                    "FLOAT",
                    {
                        "default": 0.3,
                        "min": 0.0,
                        "max": MAX_SEARCH,
                        "step": 0.01,
                        "tooltip": "Auto mode: the largest offset (seconds, either way) to search for.",
                    },
                ),
                "smoothing": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.05,
                        "tooltip": "Temporal smoothing against flicker, 0 (off) to 1 (strongest). Moving "
                        "parts and the mouth are never blended.",
                    },
                ),
            }
        }

    def correct(
        self,
        images: Any,
        audio: dict,
        fps: float,
        mode: str = "auto",
        offset: float = 0.0,
        max_offset: float = 0.3,
        smoothing: float = 0.0,
    ) -> dict[str, Any]:
        from .comfy_bridge import progress as make_progress
        from .engine.audio_input import audio_from_comfy
        from .engine.lipsync import check_settings
        from .engine.lipsync import correct as run_correct
        from .image_tensor import to_image
        from .input_check import check_numbers

        check_numbers(
            type(self), {"fps": fps, "offset": offset, "max_offset": max_offset, "smoothing": smoothing}
        )
        check_settings(float(fps), mode, float(offset), float(max_offset), float(smoothing))
        # the bar first, so it shows while the frames are converted and the face models load;
        # it counts the frames tracked, then (with smoothing) the frames smoothed
        progress = make_progress(progress_total(len(images), audio, float(fps), smoothing), "LipSyncCorrect")
        frames = _to_uint8(images)
        sound = audio_from_comfy(audio, "audio", validate=False)
        result = run_correct(
            frames,
            sound.samples,
            sound.sample_rate,
            float(fps),
            mode=mode,
            offset=float(offset),
            max_offset=float(max_offset),
            smoothing=float(smoothing),
            progress=progress,
        )
        what = "measured" if mode == "auto" else "applied"
        millis = round(result.offset_seconds * 1000) + 0  # + 0 turns -0 into 0
        text = f"offset {millis:+d} ms {what} ({result.applied_frames:+d} frames moved)"
        if result.correlation is not None:
            text += f", mouth/audio r={result.correlation:.2f}"
        text += "".join(f"; {note}" for note in result.notes)
        return {
            "ui": {"text": [text]},
            "result": (to_image(result.frames), audio, float(result.offset_seconds)),
        }


def progress_total(frames: int, audio: Any, fps: float, smoothing: float) -> int:
    """Steps of the node's bar: the frames tracked, then (with smoothing) the frames smoothed, of
    which there are as many as the audio lasts (correct() trims or pads to it)."""
    if smoothing <= 0:
        return max(1, frames)
    try:
        out = round(audio["waveform"].shape[-1] / audio["sample_rate"] * fps)
    except (KeyError, TypeError, AttributeError, ZeroDivisionError):
        out = frames  # a malformed AUDIO is reported by audio_from_comfy right after
    return max(1, frames + max(1, out))


def _to_uint8(images: Any):
    """ComfyUI IMAGE [B, H, W, 3] -> uint8 frames, after checking it is an image batch."""
    from .engine.errors import SonicInputError
    from .image_tensor import to_uint8

    shape = tuple(int(s) for s in getattr(images, "shape", ()))
    if len(shape) != 4 or shape[0] < 1 or shape[-1] != 3:
        raise SonicInputError(
            "images", f"expected an IMAGE batch [B, H, W, 3], got {list(shape)}", "connect frames"
        )
    return to_uint8(images)
