"""Latents -> frames, a few at a time, so a long clip never sits decoded on the GPU."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


@torch.no_grad()
def decode_chunks(vae, latents: torch.Tensor, chunk: int, dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """Yield decoded frames [n, 3, H, W] float32 in [0, 1] on the VAE's device, `chunk` frames per call.

    latents [F, 4, h, w] are SVD latents (scaled by the VAE's scaling factor).
    The temporal decoder sees each chunk as one short clip, as in the official code.
    """
    scale = 1.0 / vae.config.scaling_factor
    device = next(vae.parameters()).device
    for start in range(0, latents.shape[0], chunk):
        z = (latents[start : start + chunk] * scale).to(device=device, dtype=dtype)
        frames = vae.decode(z, num_frames=z.shape[0]).sample
        yield (frames.float() * 0.5 + 0.5).clamp_(0.0, 1.0).nan_to_num_(0.0)
        del frames, z


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[n, 3, H, W] float in [0, 1] (any device) -> [n, H, W, 3] uint8 numpy on the CPU."""
    return (
        frames.mul(255.0)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .contiguous()
        .cpu()
        .numpy()
    )
