"""VideoEncode: IMAGE frames (+ AUDIO) -> MP4 in the output folder, reported to the UI like core SaveVideo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.encode import PRESETS

CHUNK_FRAMES = 16  # frames converted to uint8 at a time (a 1024p float chunk is ~200 MB)


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
                "images": ("IMAGE", {"tooltip": "The frames, in order."}),
                "fps": (
                    "FLOAT",
                    {
                        "default": 25.0,
                        "min": 1.0,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frames per second (Sonic: 25).",
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
                "audio": (
                    "AUDIO",
                    {"tooltip": "Soundtrack; trimmed or padded with silence to the video's length."},
                ),
            },
        }

    def encode(
        self,
        images: Any,
        fps: float = 25.0,
        codec: str = "h264",
        crf: int = 19,
        preset: str = "medium",
        filename_prefix: str = "sonic/sonic",
        audio: dict | None = None,
    ) -> dict[str, Any]:
        from . import comfy_bridge
        from .engine.audio_input import audio_from_comfy
        from .engine.encode import VideoWriter
        from .image_tensor import uint8_chunk
        from .input_check import check_numbers

        numbers = check_numbers(type(self), {"fps": fps, "crf": crf})
        fps, crf = numbers["fps"], numbers["crf"]
        count, height, width = _frames_shape(images)
        progress = comfy_bridge.progress(count, "encode")  # shown before the audio is prepared
        sound = audio_from_comfy(audio, "audio", validate=False) if audio is not None else None
        folder, base, subfolder = comfy_bridge.save_path(filename_prefix or "sonic/sonic", width, height)
        path = Path(folder) / f"{base}.mp4"
        with VideoWriter(
            path, width, height, fps, crf=crf, preset=preset, codec=codec, audio=sound
        ) as writer:
            for start in range(0, count, CHUNK_FRAMES):
                progress.check_cancel()
                writer.write(uint8_chunk(images[start : start + CHUNK_FRAMES]))
                progress.update(min(CHUNK_FRAMES, count - start))
        video = _video_value(path, width, height, fps, count)
        summary = (
            f"{path.name}: {count} frames, {width}x{height} at {fps:g} fps, "
            f"{path.stat().st_size / 1e6:.1f} MB, {'with' if sound is not None else 'no'} audio"
        )
        return {
            "ui": {
                "images": [{"filename": path.name, "subfolder": subfolder, "type": "output"}],
                "animated": (True,),
                "text": [summary],  # shown on the node by web/sonic.js
            },
            "result": (video, str(path)),
        }


def _frames_shape(images: Any) -> tuple[int, int, int]:
    from .engine.errors import SonicInputError

    shape = tuple(int(s) for s in getattr(images, "shape", ()))
    if len(shape) != 4 or shape[3] not in (1, 3, 4):
        raise SonicInputError(
            "images",
            f"expected IMAGE frames [B, H, W, 3], got shape {list(shape)}",
            "connect SONIC_Inference's frames",
        )
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise SonicInputError(
            "images", f"no frames to encode (shape {list(shape)})", "connect a node that produces frames"
        )
    return shape[0], shape[1], shape[2]


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
