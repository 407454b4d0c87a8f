"""SONIC_Inference: runs the chosen backend on prepared data and returns frames + matching audio."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import comfy_bridge
from .engine.backend import SonicModel
from .engine.frames import ClipInfo, FrameSource, FrameStoreWriter, ReplaySource
from .engine.progress import NullProgress
from .engine.types import GenerationParams, SonicData
from .frames_io import FRAMES, audio_to_comfy
from .input_check import check_numbers

MAX_SEED = 0xFFFFFFFFFFFFFFFF


class SONIC_Inference:
    CATEGORY = "Sonic"
    RETURN_TYPES = (FRAMES, "AUDIO", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "fps")
    OUTPUT_TOOLTIPS = (
        "The frames, streamed to Lip-Sync Correct / Video Encode (Sonic Frames to IMAGE makes a core "
        "IMAGE of them). lite renders them as they are read; sonic stores them as uint8 in the temp folder.",
        "The speech trimmed/padded to the frames.",
        "Frames per second.",
    )
    FUNCTION = "generate"
    DESCRIPTION = "Animates the prepared portrait from its speech clip. The audio output is trimmed/padded to the frames."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SONIC_MODEL", {"tooltip": "From SONIC_ModelLoader."}),
                "data": (
                    "SONIC_DATA",
                    {"tooltip": "From SONIC_PreData: the cropped face, its mask and the 16 kHz audio."},
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": MAX_SEED,
                        "control_after_generate": True,
                        "tooltip": "Random seed; 0 is a seed like any other. The same seed gives the same frames.",
                    },
                ),
                "inference_steps": (
                    "INT",
                    {
                        "default": 25,
                        "min": 1,
                        "max": 100,
                        "tooltip": "sonic: denoising steps (20 fast, 25 balanced, 30 hq). lite ignores it.",
                    },
                ),
                "dynamic_scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": "Mouth and motion intensity (about 1.0-1.2). lite: mouth amplitude; sonic: scales the motion buckets.",
                    },
                ),
                "motion_scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": "Overall head motion (about 1.0-1.1); 0 keeps the head still.",
                    },
                ),
                "fps": (
                    "FLOAT",
                    {
                        "default": 25.0,
                        "min": 1.0,
                        "max": 60.0,
                        "step": 0.5,
                        "tooltip": "Frames per second of the output.",
                    },
                ),
            },
            "optional": {
                "min_appearance_guidance_scale": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.1,
                        "tooltip": "sonic: image guidance at the start of sampling.",
                    },
                ),
                "max_appearance_guidance_scale": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.1,
                        "tooltip": "sonic: image guidance at the end of sampling.",
                    },
                ),
                "audio_guidance_scale": (
                    "FLOAT",
                    {
                        "default": 7.5,
                        "min": 0.0,
                        "max": 20.0,
                        "step": 0.1,
                        "tooltip": "sonic: how strongly the audio drives the face.",
                    },
                ),
                "paste_back": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Paste the animated face back into the full original image instead of returning the crop.",
                    },
                ),
            },
        }

    def generate(
        self,
        model: SonicModel,
        data: SonicData,
        seed: int,
        inference_steps: int,
        dynamic_scale: float,
        motion_scale: float,
        fps: float,
        min_appearance_guidance_scale: float = 2.0,
        max_appearance_guidance_scale: float = 2.0,
        audio_guidance_scale: float = 7.5,
        paste_back: bool = False,
    ):
        # ComfyUI lets NaN through and never checks linked values: one rule for every number, first.
        n = check_numbers(
            type(self),
            {
                "seed": seed,
                "inference_steps": inference_steps,
                "dynamic_scale": dynamic_scale,
                "motion_scale": motion_scale,
                "fps": fps,
                "min_appearance_guidance_scale": min_appearance_guidance_scale,
                "max_appearance_guidance_scale": max_appearance_guidance_scale,
                "audio_guidance_scale": audio_guidance_scale,
            },
        )
        params = GenerationParams(**n, paste_back=bool(paste_back))
        source = make_source(model, data, params)
        return (source, audio_to_comfy(source.info.audio), params.fps)


def make_source(model: SonicModel, data: SonicData, params: GenerationParams) -> FrameSource:
    """The frames as a SONIC_FRAMES source: re-rendered when read (lite) or stored (sonic).

    Never a float32 IMAGE of the whole clip. A replayable backend's set-up (landmarks, tracks)
    runs here, so its errors show on this node; its frames are made while the next node reads them.
    """
    backend = model.backend
    total = data.frame_count(params.fps)
    paste = None
    if params.paste_back:
        from .engine.paste import PasteBack

        paste = PasteBack(data)  # mask and background built once, not per chunk
    info = clip_info(data, params, backend, total)

    def frames(progress) -> Iterator[np.ndarray]:
        chunks = backend.generate(data, params, progress)
        return chunks if paste is None else (paste(c) for c in chunks)

    if getattr(backend, "replayable", False):
        return ReplaySource(info, lambda: frames(NullProgress()), first=frames(NullProgress()))
    bar = comfy_bridge.progress(backend.progress_total(data, params), label=f"{backend.name} inference")
    with FrameStoreWriter(info.width, info.height, total, root=comfy_bridge.frames_dir()) as writer:
        for chunk in frames(bar):
            writer.write(chunk[: total - writer.count])
            if writer.count >= total:
                break
        if writer.count != total:
            raise RuntimeError(f"{backend.name} backend produced {writer.count} frames, expected {total}")
        return writer.finish(info)


def clip_info(data: SonicData, params: GenerationParams, backend, total: int) -> ClipInfo:
    """Size, rate, soundtrack and face position of the frames the backend will make."""
    from .engine.audio_input import fit_length

    width, height = data.size
    face_box, landmarks = data.face_box, data.landmarks
    if params.paste_back:  # the frames are the whole original picture: move the face there
        x0, y0, x1, y1 = data.crop_box
        sx, sy = (x1 - x0) / width, (y1 - y0) / height
        height, width = data.original.shape[:2]
        b = face_box
        face_box = (
            round(x0 + b[0] * sx),
            round(y0 + b[1] * sy),
            round(x0 + b[2] * sx),
            round(y0 + b[3] * sy),
        )
        if landmarks is not None:
            landmarks = np.asarray(landmarks, dtype=np.float32) * np.float32([sx, sy]) + np.float32([x0, y0])
    return ClipInfo(
        width=int(width),
        height=int(height),
        count=total,
        fps=float(params.fps),
        audio=fit_length(data.audio, total / params.fps),
        face_box=tuple(int(v) for v in face_box),
        landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float32),
        in_sync=bool(getattr(backend, "in_sync", False)),
        origin=backend.name,
    )
