"""What the model loader node chooses for the sonic backend (no torch import: node schemas use it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DTYPE_CHOICES = ("bf16", "fp16", "fp32")
DEVICE_CHOICES = ("auto", "cuda", "cpu")
CONFIG_CHOICES = ("auto", "full", "tiny")


@dataclass
class SonicLoadOptions:
    """Where the weights are and how to run them (passed to load_sonic_backend)."""

    model_dir: Path  # folder with unet.pth, audio2token.pth, audio2bucket.pth, whisper-tiny/, RIFE/
    svd: Path | None = None  # svd_xt*.safetensors single file, or a diffusers SVD folder
    dtype: str = "bf16"  # fp16 / bf16 / fp32 for UNet, VAE, CLIP (whisper + adapters stay fp32)
    device: str = "auto"  # auto / cuda / cuda:N / cpu
    enable_rife: bool = True  # interpolate 12.5 -> 25 fps with RIFE/flownet.pkl when present
    config: str = "auto"  # "full" (official weights), "tiny" (tests) or "auto" (from unet.pth)
