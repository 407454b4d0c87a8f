"""SONIC_FRAMES (engine.frames.FrameSource) next to ComfyUI's core IMAGE and AUDIO.

Our nodes take either: `frames` from another Sonic node (streamed, never whole in memory) or
`images`, a core IMAGE batch from any node (read a chunk at a time, so no second full-size copy is
made). SONIC_FramesToImage turns frames into an IMAGE + AUDIO for graphs that need core types.
"""

from __future__ import annotations

import math
from typing import Any

from .engine.errors import SonicInputError
from .engine.frames import CHUNK, ClipInfo, FrameSource, ReplaySource
from .engine.types import Audio

FRAMES = "SONIC_FRAMES"
FRAMES_TOOLTIP = (
    "Frames from Sonic Inference or Lip-Sync Correct (streamed: the clip is never held whole in memory)."
)
IMAGES_TOOLTIP = "Or a core IMAGE batch [B, H, W, 3] from any node (used when `frames` is not connected)."


def image_source(images: Any, fps: float, audio: Audio | None, input_name: str = "images") -> FrameSource:
    """A core IMAGE batch as a FrameSource: converted to uint8 one chunk at a time, when read."""
    from .image_tensor import uint8_chunk

    shape = tuple(int(s) for s in getattr(images, "shape", ()))
    if len(shape) != 4 or shape[3] not in (1, 3, 4):
        raise SonicInputError(
            input_name,
            f"expected IMAGE frames [B, H, W, 3], got shape {list(shape)}",
            "connect an IMAGE batch",
        )
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise SonicInputError(
            input_name, f"no frames (shape {list(shape)})", "connect a node that produces frames"
        )
    count, height, width = shape[:3]

    def start():
        for i in range(0, count, CHUNK):
            yield uint8_chunk(images[i : i + CHUNK], input_name)

    return ReplaySource(ClipInfo(width, height, count, float(fps), audio=audio, origin="IMAGE"), start)


def source_from_inputs(
    frames: FrameSource | None, images: Any, fps: float, audio: Any, node: str
) -> tuple[FrameSource, list[str]]:
    """The clip a node works on, from its `frames` or `images` input, with its fps and audio.

    Frames carry their own rate and soundtrack: a connected `audio` replaces the soundtrack, an
    `fps` that differs from the frames' own rate is not applied and the returned note says so.
    """
    from .engine.audio_input import audio_from_comfy

    sound = audio_from_comfy(audio, "audio", validate=False) if audio is not None else None
    notes: list[str] = []
    if frames is not None and images is not None:
        raise SonicInputError(
            "images", "both frames and images are connected", f"connect only one of them to {node}"
        )
    if frames is not None:
        if not isinstance(frames, FrameSource):
            raise SonicInputError(
                "frames",
                f"expected SONIC_FRAMES, got {type(frames).__name__}",
                "connect the frames output of Sonic Inference or Lip-Sync Correct",
            )
        own = frames.info.fps
        if fps is not None and math.isfinite(float(fps)) and abs(float(fps) - own) > 1e-6:
            notes.append(f"fps {float(fps):g} not applied: the frames are {own:g} fps")
        if sound is not None and not _same_audio(sound, frames.info.audio):
            # another soundtrack: the frames' own timing says nothing about this one
            frames = frames.with_info(audio=sound, in_sync=False)
        return frames, notes
    if images is None:
        raise SonicInputError(
            "frames",
            "no frames connected",
            "connect the frames output of Sonic Inference (or an IMAGE batch to `images`)",
        )
    return image_source(images, float(fps), sound), notes


def _same_audio(a: Audio, b: Audio | None) -> bool:
    import numpy as np

    return (
        b is not None
        and a.sample_rate == b.sample_rate
        and a.samples.shape == np.shape(b.samples)
        and bool(np.array_equal(a.samples, b.samples))
    )


def _comfy_value(array: Any) -> Any:
    """A float32 array as a value between nodes: a torch tensor (sharing its memory) inside
    ComfyUI, the array itself in the embedded executor (comfy_bridge.array_values: no torch
    import for a render that needs none)."""
    from . import comfy_bridge

    if comfy_bridge.array_values():
        return array
    import torch

    return torch.from_numpy(array)


def audio_to_comfy(audio: Audio) -> dict:
    """Engine Audio -> ComfyUI AUDIO dict {"waveform": [1, C, T], "sample_rate"}.

    The waveform is a torch tensor inside ComfyUI and a numpy array in the embedded executor
    (_comfy_value).
    """
    import numpy as np

    samples = np.asarray(audio.samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[None]
    return {
        "waveform": _comfy_value(np.ascontiguousarray(samples)[None]),
        "sample_rate": int(audio.sample_rate),
    }


def image_to_comfy(rgb: Any) -> tuple[Any, Any]:
    """One uint8 RGB picture [H, W, 3] -> (IMAGE [1, H, W, 3] float32 in 0..1, MASK [1, H, W] zeros).

    What ComfyUI's LoadImage gives for an opaque picture; numpy in the embedded executor, torch
    otherwise (see audio_to_comfy).
    """
    import numpy as np

    image = (np.asarray(rgb, dtype=np.float32) / np.float32(255.0))[None]
    return _comfy_value(image), _comfy_value(np.zeros(image.shape[:3], dtype=np.float32))


def to_image(source: FrameSource) -> Any:
    """The whole clip as a core IMAGE float32 batch (the one place it is whole in memory).

    A torch tensor, or a numpy array in the embedded executor (see audio_to_comfy).
    """
    import numpy as np

    from . import comfy_bridge

    out = np.empty(source.shape, dtype=np.float32)
    done = 0
    for chunk in source.chunks():
        comfy_bridge.throw_if_interrupted()
        np.divide(chunk, np.float32(255.0), out=out[done : done + len(chunk)], dtype=np.float32)
        done += len(chunk)
    return _comfy_value(out)


class SONIC_FramesToImage:
    """Frames -> core IMAGE + AUDIO + fps, for graphs that pass our frames to other nodes."""

    CATEGORY = "Sonic"
    FUNCTION = "convert"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    OUTPUT_TOOLTIPS = (
        "Every frame as a float32 IMAGE batch (a minute at 512 is ~2.4 GB: use it for short clips).",
        "The frames' soundtrack.",
        "The frames' rate.",
    )
    DESCRIPTION = (
        "Turns Sonic frames into a core IMAGE batch for other nodes (previews, upscalers, other savers). "
        "Our own nodes take the frames directly, which keeps memory flat on long clips."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"frames": (FRAMES, {"tooltip": FRAMES_TOOLTIP})}}

    def convert(self, frames: FrameSource) -> tuple:
        source, _ = source_from_inputs(frames, None, None, None, "Frames to IMAGE")
        audio = source.info.audio
        if audio is None:
            import numpy as np

            silence = max(1, round(source.info.count / source.info.fps * 16000))
            audio = Audio(np.zeros((1, silence), dtype=np.float32), 16000)
        return (to_image(source), audio_to_comfy(audio), float(source.info.fps))
