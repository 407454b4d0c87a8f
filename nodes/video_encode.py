"""VideoEncode: IMAGE frames (+ AUDIO) -> MP4 in the output folder, reported to the UI like core SaveVideo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.encode import PRESETS
from .frames_io import FRAMES, FRAMES_TOOLTIP, IMAGES_TOOLTIP


@dataclass(frozen=True)
class EncodedVideo:
    """The VIDEO value when comfy_api is not importable (embedded runner): the saved file and its shape."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int

    def get_stream_source(self) -> str:
        """Same accessor name as comfy_api's VideoFromFile: where the encoded file is."""
        return self.path

    def get_dimensions(self) -> tuple[int, int]:
        return self.width, self.height


def _codec_choices() -> list[str]:
    try:
        from .engine.encode import available_codecs

        return available_codecs() or ["h264"]
    except ImportError:  # PyAV missing: the node still lists, and encoding says what is wrong
        return ["h264"]


class VideoEncode:
    CATEGORY = "Sonic"
    FUNCTION = "encode"
    OUTPUT_NODE = True
    RETURN_TYPES = ("VIDEO", "STRING")
    RETURN_NAMES = ("video", "path")
    OUTPUT_TOOLTIPS = (
        "The saved MP4 as a VIDEO (for core SaveVideo / GetVideoComponents).",
        "The MP4's file path.",
    )
    DESCRIPTION = "Encodes frames and speech to an H.264 MP4 (yuv420p, AAC, faststart) in the output folder."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "fps": (
                    "FLOAT",
                    {
                        "default": 25.0,
                        "min": 1.0,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frames per second of `images` (Sonic: 25); frames carry their own rate.",
                    },
                ),
                "codec": (
                    _codec_choices(),
                    {
                        "default": "h264",
                        "tooltip": "h264 plays everywhere; h265 is smaller but less widely supported.",
                    },
                ),
                "crf": (
                    "INT",
                    {
                        "default": 19,
                        "min": 0,
                        "max": 51,
                        "tooltip": "Quality: lower is better and larger. 17-23 is the useful range.",
                    },
                ),
                "preset": (
                    list(PRESETS),
                    {
                        "default": "medium",
                        "tooltip": "Encoder speed: slower presets give smaller files at the same quality.",
                    },
                ),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "sonic/sonic",
                        "tooltip": "File name prefix inside the output folder; a '/' makes a subfolder.",
                    },
                ),
            },
            "optional": {
                "frames": (FRAMES, {"tooltip": FRAMES_TOOLTIP}),
                "images": ("IMAGE", {"tooltip": IMAGES_TOOLTIP}),
                "audio": (
                    "AUDIO",
                    {
                        "tooltip": "Soundtrack; trimmed or padded with silence to the video's length. "
                        "Frames carry their own; this replaces it."
                    },
                ),
            },
        }

    def encode(
        self,
        fps: float = 25.0,
        codec: str = "h264",
        crf: int = 19,
        preset: str = "medium",
        filename_prefix: str = "sonic/sonic",
        frames: Any = None,
        images: Any = None,
        audio: dict | None = None,
    ) -> dict[str, Any]:
        from . import comfy_bridge
        from .engine.encode import VideoWriter, encode_source
        from .frames_io import source_from_inputs
        from .input_check import check_numbers

        numbers = check_numbers(type(self), {"fps": fps, "crf": crf})
        fps, crf = numbers["fps"], numbers["crf"]
        source, notes = source_from_inputs(frames, images, fps, audio, "Video Encode")
        info = source.info
        progress = comfy_bridge.progress(info.count, "encode")
        folder, base, subfolder = comfy_bridge.save_path(
            filename_prefix or "sonic/sonic", info.width, info.height
        )
        path = Path(folder) / f"{base}.mp4"
        with VideoWriter(
            path, info.width, info.height, info.fps, crf=crf, preset=preset, codec=codec, audio=info.audio
        ) as writer:
            count = encode_source(source, writer, progress)
        video = _video_value(path, info.width, info.height, info.fps, count)
        summary = (
            f"{path.name}: {count} frames, {info.width}x{info.height} at {info.fps:g} fps, "
            f"{path.stat().st_size / 1e6:.1f} MB, {'with' if info.audio is not None else 'no'} audio"
        )
        summary += "".join(f"; {note}" for note in notes)
        return {
            "ui": {
                "images": [{"filename": path.name, "subfolder": subfolder, "type": "output"}],
                "animated": (True,),
                "text": [summary],  # shown on the node by web/sonic.js
            },
            "result": (video, str(path)),
        }


def _video_value(path: Path, width: int, height: int, fps: float, count: int) -> Any:
    """comfy_api's VideoFromFile inside ComfyUI (so core SaveVideo accepts it), EncodedVideo elsewhere."""
    try:
        from comfy_api.input_impl import VideoFromFile  # type: ignore[import-not-found]
    except ImportError:
        try:
            from comfy_api.latest import InputImpl  # type: ignore[import-not-found]

            VideoFromFile = InputImpl.VideoFromFile
        except (ImportError, AttributeError):
            return EncodedVideo(str(path), width, height, float(fps), count)
    return VideoFromFile(str(path))
