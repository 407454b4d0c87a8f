"""SONIC_ModelLoader: picks the animation backend and loads what it needs."""

from __future__ import annotations

from pathlib import Path

from . import comfy_bridge
from .engine.backend import SonicModel

BACKENDS = ("lite", "sonic")
DTYPES = ("bf16", "fp16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
DIFFUSERS_FOLDER = "(diffusers folder svd in models/sonic)"


def _svd_choices() -> list[str]:
    """svd_xt*.safetensors files ComfyUI lists in models/checkpoints, plus the diffusers-folder option."""
    files = [f for f in comfy_bridge.list_model_files("checkpoints") if "svd" in f.lower()]
    return [*files, DIFFUSERS_FOLDER] if files else [DIFFUSERS_FOLDER]


class SONIC_ModelLoader:
    CATEGORY = "Sonic"
    RETURN_TYPES = ("SONIC_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = "Chooses the animation backend: 'lite' (CPU, no weights) or 'sonic' (official Sonic weights, GPU)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "backend": (
                    list(BACKENDS),
                    {
                        "default": "lite",
                        "tooltip": "lite: landmark animation on the CPU, no model files needed. "
                        "sonic: the official Sonic diffusion model (needs models/sonic and an SVD checkpoint; GPU).",
                    },
                ),
                "svd_checkpoint": (
                    _svd_choices(),
                    {
                        "tooltip": "sonic only: the Stable Video Diffusion XT checkpoint (VAE, CLIP image encoder, scheduler) - "
                        "a svd_xt*.safetensors in models/checkpoints, or a diffusers folder models/sonic/stable-video-diffusion-img2vid-xt."
                    },
                ),
                "dtype": (list(DTYPES), {"default": "bf16", "tooltip": "sonic only: UNet/VAE precision. Whisper and the audio adapters always run in fp32."}),
                "device": (list(DEVICES), {"default": "auto", "tooltip": "sonic only: where the model runs; auto picks the GPU when there is one."}),
                "enable_rife": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "sonic only: interpolate 12.5 fps generation to 25 fps with RIFE (models/sonic/RIFE/flownet.pkl)."},
                ),
            },
            "optional": {
                "model_dir": (
                    "STRING",
                    {"default": "", "tooltip": "Folder holding unet.pth, audio2token.pth, audio2bucket.pth, whisper-tiny/ (empty = ComfyUI's models/sonic)."},
                ),
            },
        }

    def load(self, backend: str, svd_checkpoint: str = DIFFUSERS_FOLDER, dtype: str = "bf16", device: str = "auto",
             enable_rife: bool = True, model_dir: str = "") -> tuple[SonicModel]:
        settings = {"backend": backend, "dtype": dtype, "device": device, "enable_rife": enable_rife}
        if backend == "lite":
            from .engine.lite.backend import LiteBackend

            return (SonicModel(LiteBackend(), settings),)
        if backend == "sonic":
            return (SonicModel(_load_sonic(svd_checkpoint, dtype, device, enable_rife, model_dir), settings),)
        raise ValueError(f"backend: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _find_sonic_dir(model_dir: str) -> Path:
    from .engine.errors import SonicModelError

    candidates = [Path(model_dir)] if model_dir else comfy_bridge.model_dirs()
    for d in candidates:
        if (d / "unet.pth").is_file():
            return d
    where = ", ".join(str(d) for d in candidates) or "(no models/sonic folder registered)"
    raise SonicModelError(f"model_dir: unet.pth not found in {where}; put the Sonic model files in ComfyUI/models/sonic")


def _find_svd(svd_checkpoint: str, sonic_dir: Path) -> Path | None:
    if svd_checkpoint and svd_checkpoint != DIFFUSERS_FOLDER:
        for d in comfy_bridge.model_dirs("checkpoints"):
            if (d / svd_checkpoint).is_file():
                return d / svd_checkpoint
    return None


def _load_sonic(svd_checkpoint: str, dtype: str, device: str, enable_rife: bool, model_dir: str):
    from .engine.sonic.backend import SonicLoadOptions, load_sonic_backend

    sonic_dir = _find_sonic_dir(model_dir)
    options = SonicLoadOptions(
        model_dir=sonic_dir, svd=_find_svd(svd_checkpoint, sonic_dir), dtype=dtype, device=device, enable_rife=enable_rife
    )
    return load_sonic_backend(options)
