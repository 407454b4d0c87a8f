"""The `sonic` backend: official Sonic weights, our own inference (see DESIGN.md section 4).

generate() runs, for one prepared portrait + speech clip:
  encode image (CLIP embedding, VAE latent) -> audio features (whisper, adapters)
  -> denoise (sampler) -> decode in chunks -> RIFE in chunks -> uint8 -> retime to fps
and yields uint8 chunks as they are ready, so memory stays bounded for long
audio. Nothing about a call is stored on the backend: two calls with the same
inputs and seed give the same frames.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..errors import SonicInputError, SonicModelError, SonicOutOfMemoryError, next_lower_tier
from ..progress import Progress
from ..types import GenerationParams, SonicData
from .attention import AudioAttentionContext
from .audio_features import audio_windows, frame_conditioning, generated_frame_count
from .config import CLIP_MEAN, CLIP_STD, SonicConfig, get_config
from .decode import decode_chunks, to_uint8
from .interpolate import Retimer, interpolate_stream
from .options import SonicLoadOptions
from .sampler import Conditioning, denoise, make_schedule
from .timing import NoTimes, StageTimes

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
OFFLOAD_DEVICE = torch.device("cpu")
# Working memory of one UNet call per latent pixel and byte of dtype: the rate ComfyUI assumes for
# its own UNets with SDPA attention (0.02 MiB). A heuristic: calibrate against bench_sonic.py peaks.
UNET_BYTES_PER_LATENT_PIXEL = 0.02 * 1024 * 1024
GUIDANCE_BRANCHES = 3  # uncond, image only, image + audio share one UNet batch


@dataclass
class SonicModels:
    """The loaded networks (no per-call state)."""

    config: SonicConfig
    unet: nn.Module
    context: AudioAttentionContext
    vae: nn.Module
    clip: nn.Module
    scheduler_config: dict
    feature_extractor: object
    whisper: nn.Module
    audio_to_tokens: nn.Module
    audio_to_bucket: nn.Module
    rife: nn.Module | None

    def networks(self) -> nn.ModuleDict:
        """Every network in one module, so a memory manager can move them all as one model."""
        named = {
            "unet": self.unet,
            "vae": self.vae,
            "clip": self.clip,
            "whisper": self.whisper,
            "audio_to_tokens": self.audio_to_tokens,
            "audio_to_bucket": self.audio_to_bucket,
            "rife": self.rife,
        }
        return nn.ModuleDict({name: module for name, module in named.items() if module is not None})


class MemoryManager(Protocol):
    """Someone else's memory management (ComfyUI's) that owns where the networks live.

    With one, the backend never moves its networks itself: two owners of placement
    would undo each other's work and ComfyUI's accounting of free memory.
    """

    def load(self, memory_required: int) -> None:
        """Make room (evicting other models if needed) and put the networks on their device."""

    def offload(self) -> None:
        """Move the networks to their offload device now."""

    def after_out_of_memory(self) -> None:
        """Release what the manager holds after a run ran out of device memory."""


# (networks, load device, offload device) -> a manager, or None where there is none (outside ComfyUI)
MemoryManagerFactory = Callable[[nn.Module, torch.device, torch.device], "MemoryManager | None"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SonicInputError(
            "device", f"{device!r} is not a torch device", "use auto, cuda, cuda:N or cpu"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SonicInputError("device", "CUDA is not available on this machine", "choose auto or cpu")
    return dev


def _indexed(device: torch.device) -> torch.device:
    """cuda -> cuda:N: ComfyUI compares devices with ==, and torch.device("cuda") != torch.device("cuda:0")."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise SonicInputError("dtype", f"{dtype!r} is not supported", f"use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


class SonicBackend:
    """generate(data, params, progress) -> uint8 frame chunks [n, H, W, 3] at params.fps."""

    name = "sonic"

    def __init__(
        self,
        models: SonicModels,
        device: torch.device,
        dtype: torch.dtype,
        memory: MemoryManagerFactory | None = None,
    ) -> None:
        self.models = models
        self.device = _indexed(device)
        self.dtype = dtype
        self._on_device = False
        self._manager: MemoryManager | None = None
        if memory is not None:
            self._place(OFFLOAD_DEVICE)  # run dtypes first: the manager measures the networks now
            self._manager = memory(models.networks(), self.device, OFFLOAD_DEVICE)
        if self._manager is None:
            self._place(self.device)  # no manager: on the device from the start, as before

    @property
    def memory_manager(self) -> MemoryManager | None:
        """The outside memory manager that places the networks, or None when the backend does it."""
        return self._manager

    # ---------------------------------------------------------------- placement

    def _place(self, device: torch.device) -> None:
        m = self.models
        for module, dtype in (
            (m.unet, self.dtype),
            (m.vae, self.dtype),
            (m.clip, self.dtype),
            (m.whisper, torch.float32),
            (m.audio_to_tokens, torch.float32),
            (m.audio_to_bucket, torch.float32),
            (m.rife, torch.float32),
        ):
            if module is not None:
                # nn.Module.to: diffusers' override only adds a warning about fp32-kept modules (none here)
                nn.Module.to(module, device=device, dtype=dtype)
        self._on_device = device == self.device

    def offload(self) -> None:
        """Move every network to the CPU to free device memory; the next generate() moves them back."""
        if self._manager is not None:
            self._manager.offload()
        elif self.device.type != "cpu" and self._on_device:
            self._place(OFFLOAD_DEVICE)
            _free_device_memory()

    def _ensure_on_device(self, data: SonicData) -> None:
        if self._manager is not None:
            self._manager.load(self.working_memory_bytes(data))
        elif not self._on_device:
            self._place(self.device)

    def working_memory_bytes(self, data: SonicData) -> int:
        """Device memory a run needs beyond the weights: one UNet call over the guidance batch of a window.

        The UNet dominates (decode and RIFE work in small chunks); ComfyUI frees
        other models until this much is free on top of ours.
        """
        h, w = data.image.shape[:2]
        latent_pixels = (h // 8) * (w // 8)
        batch = GUIDANCE_BRANCHES * self.models.config.window
        return int(batch * latent_pixels * self.dtype.itemsize * UNET_BYTES_PER_LATENT_PIXEL)

    @property
    def rife_active(self) -> bool:
        return self.models.rife is not None

    def output_fps_source(self) -> float:
        """Frame rate of the generated (and interpolated) frames before retiming."""
        fps = self.models.config.generation_fps
        return fps * 2 if self.rife_active else fps

    def progress_total(self, data: SonicData, params: GenerationParams) -> int:
        """progress.update() counts one per UNet call (each window of each denoising step), then
        the output frames as they are decoded: the bar moves, and a cancel is seen, every window."""
        cfg = self.models.config
        frames = generated_frame_count(len(data.audio_16k), cfg)
        windows = -(-frames // cfg.window)
        return int(params.inference_steps) * windows + data.frame_count(params.fps)

    # ---------------------------------------------------------------- generate

    def generate(
        self,
        data: SonicData,
        params: GenerationParams,
        progress: Progress,
        timings: StageTimes | None = None,
    ) -> Iterator[np.ndarray]:
        """Frames for `data` at params.fps: exactly data.frame_count(params.fps) of them, in uint8 chunks.

        A CUDA out-of-memory frees what this call allocated and raises
        SonicOutOfMemoryError naming the resolution and the next lower tier.
        `timings` (benchmarks only) collects seconds per stage.
        """
        _check_inputs(data, params)
        failure = None
        try:
            yield from self._generate(data, params, progress, timings or NoTimes())
        except torch.OutOfMemoryError as exc:
            failure = str(exc).splitlines()[0][:200] if str(exc) else "device out of memory"
        # outside the except block the traceback (and the tensors its frames hold) is gone
        if failure is not None:
            _free_device_memory()
            if self._manager is not None:
                self._manager.after_out_of_memory()
            raise SonicOutOfMemoryError(data.min_resolution, next_lower_tier(data.min_resolution), failure)

    @torch.inference_mode()
    def _generate(
        self, data: SonicData, params: GenerationParams, progress: Progress, timer: StageTimes
    ) -> Iterator[np.ndarray]:
        m = self.models
        cfg = m.config
        self._ensure_on_device(data)
        device, dtype = self.device, self.dtype

        with timer.stage("encode image"):
            image = torch.from_numpy(np.ascontiguousarray(data.image)).to(device)
            image = image.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [1, 3, H, W] in [-1, 1]
            clip_embeds = m.clip(pixel_values=_clip_pixels(data.image, device, dtype)).image_embeds  # [1, C]
            image_latents = m.vae.encode(image.to(dtype)).latent_dist.mode()  # [1, 4, h, w]
            del image

        with timer.stage("audio features"):
            windows = audio_windows(data.audio_16k, m.feature_extractor, m.whisper, cfg, device)
            tokens, uncond, buckets = frame_conditioning(
                windows, m.audio_to_tokens, m.audio_to_bucket, clip_embeds, dtype
            )
            del windows
            buckets = buckets * float(params.dynamic_scale)
            buckets[:, 0] = buckets[:, 0] * float(params.motion_scale)  # head-motion bucket
        frames = tokens.shape[0]

        schedule = make_schedule(m.scheduler_config, int(params.inference_steps))
        generator = torch.Generator("cpu").manual_seed(int(params.seed))
        noise = torch.randn((frames, *image_latents.shape[1:]), generator=generator).to(device)
        # as the official pipeline: the reference latent noised to sigma_max (i2i strength 1)
        latents = image_latents.float() * float(m.vae.config.scaling_factor) + noise * schedule.sigmas[0]
        del noise

        cond = Conditioning(
            image_latents=image_latents,
            image_embeds=clip_embeds[:, None].to(dtype),
            audio_tokens=tokens.to(dtype),
            uncond_tokens=uncond.to(dtype),
            buckets=buckets.float(),
            face_mask=torch.from_numpy(np.asarray(data.face_mask, dtype=np.float32)).to(device),
            fps=cfg.generation_fps,
        )
        del tokens, uncond, buckets
        steps = int(params.inference_steps)
        appearance = torch.linspace(
            params.min_appearance_guidance_scale, params.max_appearance_guidance_scale, steps
        ).tolist()
        with timer.stage("denoise"):
            latents = denoise(
                m.unet,
                m.context,
                cond,
                latents,
                schedule,
                cfg,
                appearance,
                float(params.audio_guidance_scale),
                progress,
            )
        del cond

        retimer = Retimer(self.output_fps_source(), float(params.fps), data.frame_count(params.fps))
        decoded = timer.iterate(decode_chunks(m.vae, latents, cfg.decode_chunk, dtype), "vae decode")
        for chunk in timer.iterate(interpolate_stream(decoded, m.rife, batch=cfg.decode_chunk), "rife"):
            progress.check_cancel()  # a long clip's decode can be stopped too
            with timer.stage("to uint8 + retime"):
                out = retimer.push(to_uint8(chunk))
            del chunk
            if out is not None:
                progress.update(len(out))
                yield out
        tail = retimer.finish()
        if tail is not None:
            progress.update(len(tail))
            yield tail


def _clip_pixels(image: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The crop resized to 224x224 (Lanczos) and CLIP-normalised: [1, 3, 224, 224]."""
    from PIL import Image

    small = Image.fromarray(np.ascontiguousarray(image)).resize((224, 224), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return ((x - mean) / std)[None].to(device=device, dtype=dtype)


def _check_inputs(data: SonicData, params: GenerationParams) -> None:
    h, w = data.image.shape[:2]
    if h % 64 or w % 64 or data.image.ndim != 3 or data.image.shape[2] != 3:
        raise SonicInputError(
            "sonic_data",
            f"image is {w}x{h}x{data.image.shape[2:]}",
            "both sides must be multiples of 64 (use SONIC_PreData)",
        )
    if tuple(data.face_mask.shape) != (h, w):
        raise SonicInputError("sonic_data", "face_mask size differs from the image", "re-run SONIC_PreData")
    if int(params.inference_steps) < 1:
        raise SonicInputError(
            "inference_steps", f"{params.inference_steps} is below 1", "use 10-50 (25 is balanced)"
        )
    if not params.fps > 0:
        raise SonicInputError("fps", f"{params.fps} is not positive", "use e.g. 25")


def _free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -------------------------------------------------------------------- loading


def load_sonic_models(options: SonicLoadOptions) -> SonicModels:
    """Read every file strictly (see loading.py) into networks on the CPU."""
    from .loading import (
        UNET_FILE,
        detect_config,
        load_adapters,
        load_rife,
        load_svd,
        load_unet,
        load_whisper,
        read_state_dict,
    )

    model_dir = Path(options.model_dir)
    if not model_dir.is_dir():
        raise SonicModelError(
            f"model_dir: {model_dir} is not a folder; it must hold unet.pth, audio2token.pth, ..."
        )
    unet_state = read_state_dict(model_dir / UNET_FILE)
    name = options.config
    if name == "auto":
        name = detect_config(unet_state, str(model_dir / UNET_FILE))
    config = get_config(name)
    context = AudioAttentionContext()
    unet = load_unet(model_dir, config, context, unet_state)
    del unet_state
    to_tokens, to_bucket = load_adapters(model_dir, config)
    extractor, whisper = load_whisper(model_dir)
    svd = load_svd(options.svd, config)
    rife = load_rife(model_dir, config.rife_channels) if options.enable_rife else None
    return SonicModels(
        config=config,
        unet=unet,
        context=context,
        vae=svd.vae,
        clip=svd.clip,
        scheduler_config=svd.scheduler_config,
        feature_extractor=extractor,
        whisper=whisper,
        audio_to_tokens=to_tokens,
        audio_to_bucket=to_bucket,
        rife=rife,
    )


def load_sonic_backend(options: SonicLoadOptions, memory: MemoryManagerFactory | None = None) -> SonicBackend:
    """Load the official Sonic files + SVD base and return a ready backend.

    `memory` hands placement to an outside memory manager (ComfyUI's, see
    comfy_bridge.managed_model); without one the backend keeps its networks on the device.
    """
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype)
    return SonicBackend(load_sonic_models(options), device, dtype, memory)
