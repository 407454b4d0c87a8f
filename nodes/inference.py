"""SONIC_Inference: runs the chosen backend on prepared data and returns frames + matching audio."""

from __future__ import annotations

from . import comfy_bridge
from .engine.backend import SonicModel
from .engine.types import GenerationParams, SonicData
from .input_check import check_numbers

MAX_SEED = 0xFFFFFFFFFFFFFFFF


class SONIC_Inference:
    CATEGORY = "Sonic"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
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
        frames = collect_frames(model, data, params)
        audio = audio_for_frames(data, frames.shape[0] / params.fps)
        return (frames, audio, params.fps)


def collect_frames(model: SonicModel, data: SonicData, params: GenerationParams):
    """Fill one preallocated float32 IMAGE tensor chunk by chunk (never a second full copy)."""
    import torch

    backend = model.backend
    bar = comfy_bridge.progress(backend.progress_total(data, params), label=f"{backend.name} inference")
    total = data.frame_count(params.fps)
    paste = None
    if params.paste_back:
        from .engine.paste import PasteBack

        paste = PasteBack(data)  # mask and background built once, not per chunk
    out = None
    filled = 0
    for chunk in backend.generate(data, params, bar):
        if paste is not None:
            chunk = paste(chunk)
        if out is None:
            out = torch.empty((total, *chunk.shape[1:]), dtype=torch.float32)
        n = min(len(chunk), total - filled)
        out[filled : filled + n] = torch.from_numpy(chunk[:n]).to(torch.float32).div_(255.0)
        filled += n
    if out is None or filled != total:
        raise RuntimeError(f"{backend.name} backend produced {filled} frames, expected {total}")
    return out


def audio_for_frames(data: SonicData, seconds: float) -> dict:
    """The input audio trimmed/padded to the video length, as a ComfyUI AUDIO dict."""
    import torch

    from .engine.audio_input import fit_length

    audio = fit_length(data.audio, seconds)
    return {
        "waveform": torch.from_numpy(audio.samples).unsqueeze(0).contiguous(),
        "sample_rate": int(audio.sample_rate),
    }
