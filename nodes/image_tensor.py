"""Conversions between ComfyUI IMAGE tensors (float32 0..1) and the engine's uint8 frames.

A float tensor in 0..255 (a common mistake of custom nodes) is refused with a one-line
SonicInputError saying the IMAGE must be 0..1, instead of silently turning white.

Done a slice at a time so a long clip never needs a second full-size float
copy, and between slices the user's cancel is honoured (converting minutes of
video takes seconds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import comfy_bridge
from .engine.image_input import check_unit_range

ROWS = 64  # frames per slice: bounded temporaries, frequent cancel checks


def uint8_chunk(chunk: Any, input_name: str = "images") -> np.ndarray:
    """A slice of an IMAGE tensor (or array) -> uint8 RGB numpy [n, H, W, 3]; NaN counts as black.

    A float slice scaled 0..255 instead of 0..1 is a SonicInputError (check_unit_range says why it
    is refused rather than rescaled); +-inf is clamped like any out-of-range value.
    """
    if hasattr(chunk, "detach"):
        import torch

        chunk = chunk.detach()
        if chunk.dtype != torch.uint8:
            f = torch.nan_to_num(chunk.float(), nan=0.0, posinf=1.0, neginf=0.0)
            if f.numel():
                check_unit_range(float(f.max()), input_name)
            chunk = f.mul_(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
        arr = chunk.cpu().numpy()
    else:
        arr = np.asarray(chunk)
        if arr.dtype != np.uint8:
            f = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
            if f.size:
                check_unit_range(float(f.max()), input_name)
            arr = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return arr


def to_uint8(images: Any, input_name: str = "images") -> np.ndarray:
    """A whole IMAGE batch [B, H, W, C] -> uint8 [B, H, W, 3]."""
    count, height, width = (int(s) for s in images.shape[:3])
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(0, count, ROWS):
        comfy_bridge.throw_if_interrupted()
        out[i : i + ROWS] = uint8_chunk(images[i : i + ROWS], input_name)
    return out


def to_image(frames: np.ndarray) -> Any:
    """uint8 [N, H, W, 3] -> a ComfyUI IMAGE float32 tensor in 0..1."""
    import torch

    out = torch.empty(frames.shape, dtype=torch.float32)
    for i in range(0, frames.shape[0], ROWS):
        comfy_bridge.throw_if_interrupted()
        out[i : i + ROWS] = torch.from_numpy(frames[i : i + ROWS]).float().div_(255.0)
    return out
