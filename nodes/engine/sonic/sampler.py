"""Sonic's denoising loop: Euler (v-prediction, Karras sigmas) over sliding, shifting windows.

Per step, the whole clip's latents are covered by windows of `window` frames
(circular indices); the window starts move back by `window_shift` frames every
step so seams never stay in one place. Each window runs the UNet once on a
batch of three guidance branches [uncond, image only, image + audio], combined
as  uncond + g1 * (image - uncond) + g2 * (full - image),  then takes one Euler
step; a frame covered by several windows gets the mean of their results.

The sigma/timestep schedule comes from diffusers' EulerDiscreteScheduler with
the SVD scheduler settings; the Euler update itself is written out (stateless)
because every window restarts the scheduler's step index in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..progress import Progress
from .attention import AudioAttentionContext
from .config import SonicConfig


@dataclass
class Schedule:
    sigmas: list[float]  # len steps + 1, last is 0
    timesteps: torch.Tensor  # [steps], the UNet's (continuous) timestep per step


def make_schedule(scheduler_config: dict, steps: int) -> Schedule:
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps, device="cpu")
    return Schedule(sigmas=[float(s) for s in scheduler.sigmas], timesteps=scheduler.timesteps.clone())


def euler_step(sample: torch.Tensor, v_pred: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of a v-prediction model (EulerDiscreteScheduler.step with s_churn=0), in float32."""
    sample = sample.float()
    denom = sigma * sigma + 1.0
    denoised = v_pred.float() * (-sigma / denom**0.5) + sample / denom
    derivative = (sample - denoised) / sigma
    return sample + derivative * (sigma_next - sigma)


@dataclass
class Conditioning:
    """Everything one clip's denoising needs, already on the device."""

    image_latents: torch.Tensor  # [1, 4, h, w] VAE mode of the reference (unscaled), model dtype
    image_embeds: torch.Tensor  # [1, 1, C] CLIP image embedding, model dtype
    audio_tokens: torch.Tensor  # [F, T, C] model dtype
    uncond_tokens: torch.Tensor  # [T, C] model dtype
    buckets: torch.Tensor  # [F, 2] float32, already scaled
    face_mask: torch.Tensor | None  # [H, W] pixel mask
    fps: float  # time id


def window_indices(frames: int, window: int, shift: int) -> list[torch.Tensor]:
    """Frame indices of each window this step (circular; may repeat a frame when frames < window)."""
    out = []
    for start in range(0, frames, window):
        first = start - shift
        out.append(torch.arange(first, first + window) % frames)
    return out


def denoise(
    unet,
    context: AudioAttentionContext,
    cond: Conditioning,
    latents: torch.Tensor,
    schedule: Schedule,
    config: SonicConfig,
    appearance_scales: list[float],
    audio_scale: float,
    progress: Progress,
) -> torch.Tensor:
    """Denoise latents [F, 4, h, w] (float32, already at sigma_max); returns float32 latents at sigma 0."""
    frames = latents.shape[0]
    dtype = cond.image_latents.dtype
    device = latents.device
    levels = len(unet.config.block_out_channels)
    zeros_lat = torch.zeros_like(cond.image_latents)
    image_cond = torch.cat([zeros_lat, cond.image_latents, cond.image_latents])[:, None]  # [3,1,4,h,w]
    embeds = torch.cat([torch.zeros_like(cond.image_embeds), cond.image_embeds, cond.image_embeds])
    shift = 0
    for i, t in enumerate(schedule.timesteps):
        sigma, sigma_next = schedule.sigmas[i], schedule.sigmas[i + 1]
        c_in = 1.0 / (sigma * sigma + 1.0) ** 0.5
        total = torch.zeros_like(latents)
        count = torch.zeros(frames, device=device)
        for idx in window_indices(frames, config.window, shift):
            # per window, not per step: a step over a minute of speech is 30 UNet calls, and
            # a user's cancel (ComfyUI's interrupt) must not wait for all of them
            progress.check_cancel()
            idx = idx.to(device)
            x = latents[idx]
            n = idx.shape[0]
            model_in = (x * c_in).to(dtype)[None].expand(3, -1, -1, -1, -1)
            model_in = torch.cat([model_in, image_cond.expand(-1, n, -1, -1, -1)], dim=2)
            tokens = cond.audio_tokens[idx]
            uncond = cond.uncond_tokens[None].expand(n, -1, -1)
            spatial_tokens = torch.cat([uncond, uncond, tokens])  # [3*n, T, C]
            bucket = cond.buckets[idx].mean(dim=0)
            # float32: the sinusoidal embedding is computed in float32 anyway, bf16 would round the buckets
            time_ids = torch.cat([bucket.new_full((1,), cond.fps), bucket]).float()[None].expand(3, -1)
            with context.bound(
                spatial_tokens,
                batch=3,
                frames=n,
                face_mask=cond.face_mask,
                latent_size=tuple(latents.shape[-2:]),
                levels=levels,
                scale=config.ip_scale,
            ):
                out = unet(
                    model_in,
                    t.to(device),
                    encoder_hidden_states=embeds,
                    added_time_ids=time_ids,
                    return_dict=False,
                )[0]
            out = out.float()
            v = out[0] + appearance_scales[i] * (out[1] - out[0]) + audio_scale * (out[2] - out[1])
            total.index_add_(0, idx, euler_step(x, v, sigma, sigma_next))
            count.index_add_(0, idx, torch.ones(n, device=device))
            del out, v, model_in
            progress.update(1)
        latents = total / count[:, None, None, None]
        shift += config.window_shift
    return latents
