"""LipSyncCorrect: measure and fix the audio/video offset of talking-head frames (any backend)."""

from __future__ import annotations

from typing import Any

from .engine.lipsync import MANUAL_RANGE, MAX_SEARCH, MODES
from .frames_io import FRAMES, FRAMES_TOOLTIP, IMAGES_TOOLTIP


class LipSyncCorrect:
    """Thin node over engine.lipsync.correct(); shows the offset it measured or applied."""

    CATEGORY = "Sonic"
    FUNCTION = "correct"
    RETURN_TYPES = (FRAMES, "AUDIO", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "offset_seconds")
    OUTPUT_TOOLTIPS = (
        "The frames moved into sync (as many as the audio needs at this fps), optionally deflickered; "
        "computed while Video Encode reads them (Sonic Frames to IMAGE makes a core IMAGE of them).",
        "The audio, unchanged: the frames were moved to match it.",
        "Auto: the measured offset in seconds (+ = the video was late). Manual: the offset applied.",
    )
    DESCRIPTION = (
        "Finds how far the mouth lags or leads the speech by correlating the lip opening with the "
        "audio loudness, and shifts the frames to fix it. Works on frames from any backend; lite "
        "frames are in sync by construction and are not measured."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "optional": {
                "frames": (FRAMES, {"tooltip": FRAMES_TOOLTIP}),
                "images": ("IMAGE", {"tooltip": IMAGES_TOOLTIP + " One face, talking."}),
                "audio": (
                    "AUDIO",
                    {
                        "tooltip": "The speech the frames should follow (frames carry their own; this replaces it)."
                    },
                ),
            },
            "required": {
                "fps": (
                    "FLOAT",
                    {
                        "default": 25.0,
                        "min": 1.0,
                        "max": 120.0,
                        "step": 0.01,
                        "tooltip": "Frame rate of `images` (frames carry their own rate).",
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
            },
        }

    def correct(
        self,
        fps: float = 25.0,
        mode: str = "auto",
        offset: float = 0.0,
        max_offset: float = 0.3,
        smoothing: float = 0.0,
        frames: Any = None,
        images: Any = None,
        audio: dict | None = None,
    ) -> dict[str, Any]:
        from .comfy_bridge import progress as make_progress
        from .engine.lipsync import check_settings, correct_source
        from .frames_io import audio_to_comfy, source_from_inputs
        from .input_check import check_numbers

        check_numbers(
            type(self), {"fps": fps, "offset": offset, "max_offset": max_offset, "smoothing": smoothing}
        )
        check_settings(float(fps), mode, float(offset), float(max_offset), float(smoothing))
        source, notes = source_from_inputs(frames, images, fps, audio, "Lip-Sync Correct")
        if source.info.audio is None:
            from .engine.errors import SonicInputError

            raise SonicInputError("audio", "not connected", "connect the speech the frames should follow")
        # the bar first, so it shows while the face model loads
        progress = make_progress(len(source), "LipSyncCorrect")
        result = correct_source(
            source,
            mode=mode,
            offset=float(offset),
            max_offset=float(max_offset),
            smoothing=float(smoothing),
            progress=progress,
        )
        what = "measured" if result.measured else "applied" if mode == "manual" else "assumed"
        millis = round(result.offset_seconds * 1000) + 0  # + 0 turns -0 into 0
        text = f"offset {millis:+d} ms {what} ({result.applied_frames:+d} frames moved)"
        if result.correlation is not None:
            text += f", mouth/audio r={result.correlation:.2f}"
        text += "".join(f"; {note}" for note in notes + result.notes)
        sound = audio if audio is not None else audio_to_comfy(source.info.audio)
        return {
            "ui": {"text": [text]},
            "result": (result.source, sound, float(result.offset_seconds)),
        }
