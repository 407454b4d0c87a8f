"""SONIC_ModelLoader: picks the animation backend and loads what it needs."""

from __future__ import annotations

from pathlib import Path

from . import comfy_bridge
from .engine.backend import SonicModel
from .engine.errors import SonicModelError
from .engine.sonic.options import DEVICE_CHOICES, DTYPE_CHOICES

BACKENDS = ("lite", "sonic")
# Fixed first choices: ComfyUI rejects a combo value that is not in the list, so the
# templates must name values that exist on every host, whatever files it has.
AUTO_SVD = "(auto)"
DEFAULT_SONIC_DIR = "(models/sonic)"
SVD_FOLDER_NAMES = ("stable-video-diffusion-img2vid-xt", "svd_xt", "svd")


def _sonic_dir_choices() -> list[str]:
    """models/sonic itself plus any subfolder of it that holds a unet.pth (several weight sets)."""
    subdirs = []
    for root in comfy_bridge.model_dirs():
        if root.is_dir():
            subdirs += sorted(p.parent.name for p in root.glob("*/unet.pth"))
    return [DEFAULT_SONIC_DIR, *dict.fromkeys(subdirs)]


def _svd_candidates() -> dict[str, Path]:
    """svd*.safetensors in models/checkpoints and diffusers SVD folders in models/sonic or checkpoints."""
    found: dict[str, Path] = {}
    for kind in ("checkpoints", "sonic"):
        for root in comfy_bridge.model_dirs(kind):
            if not root.is_dir():
                continue
            for path in sorted(root.iterdir()):
                is_file = path.is_file() and path.suffix == ".safetensors" and "svd" in path.name.lower()
                is_folder = _is_diffusers_svd(path)
                if is_file or is_folder:
                    found.setdefault(path.name, path)
    return found


def _is_diffusers_svd(path: Path) -> bool:
    """A diffusers SVD folder: what we use of it is vae/ and image_encoder/ (model_index.json is optional)."""
    return (path / "vae" / "config.json").is_file() and (path / "image_encoder" / "config.json").is_file()


class SONIC_ModelLoader:
    CATEGORY = "Sonic"
    RETURN_TYPES = ("SONIC_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = (
        "Chooses the animation backend: 'lite' (CPU, no weights) or 'sonic' (official Sonic weights, GPU)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "backend": (
                    list(BACKENDS),
                    {
                        "default": "lite",
                        "tooltip": "lite: landmark animation on the CPU, no model files needed. sonic: the official "
                        "Sonic diffusion model (needs the files in models/sonic and an SVD checkpoint; GPU).",
                    },
                ),
                "sonic_model_dir": (
                    _sonic_dir_choices(),
                    {
                        "tooltip": "sonic only: the folder with unet.pth, audio2token.pth, audio2bucket.pth, whisper-tiny/ "
                        "and optional RIFE/flownet.pkl - models/sonic itself or a subfolder of it "
                        "(extra_model_paths.yaml 'sonic:' entries work)."
                    },
                ),
                "svd_checkpoint": (
                    [AUTO_SVD, *_svd_candidates()],
                    {
                        "tooltip": "sonic only: the Stable Video Diffusion img2vid-xt base - ComfyUI's svd_xt*.safetensors "
                        "in models/checkpoints or a diffusers folder. Only its VAE, CLIP image encoder and scheduler "
                        "settings are used; the UNet comes from unet.pth. (auto) takes the first one found."
                    },
                ),
                "dtype": (
                    list(DTYPE_CHOICES),
                    {
                        "default": "bf16",
                        "tooltip": "sonic only: precision of the UNet, VAE and image encoder. bf16 for RTX 30xx/A100/H100, "
                        "fp16 for older GPUs, fp32 for CPU or debugging. Whisper and the audio adapters always run in fp32.",
                    },
                ),
                "device": (
                    list(DEVICE_CHOICES),
                    {
                        "default": "auto",
                        "tooltip": "sonic only: auto = the GPU when there is one, else the CPU (very slow).",
                    },
                ),
                "enable_rife": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "sonic only: interpolate the generated 12.5 fps to 25 fps with RIFE (RIFE/flownet.pkl). "
                        "When off or missing, frames are repeated to reach the output fps.",
                    },
                ),
            },
            "optional": {
                "model_dir": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "sonic only: an explicit folder path that overrides sonic_model_dir "
                        "(for the runner or weights outside ComfyUI's model folders).",
                    },
                ),
            },
        }

    def load(
        self,
        backend: str,
        sonic_model_dir: str = DEFAULT_SONIC_DIR,
        svd_checkpoint: str = AUTO_SVD,
        dtype: str = "bf16",
        device: str = "auto",
        enable_rife: bool = True,
        model_dir: str = "",
    ) -> tuple[SonicModel]:
        settings = {"backend": backend, "dtype": dtype, "device": device, "enable_rife": enable_rife}
        if backend == "lite":
            from .engine.lite.backend import LiteBackend

            return (SonicModel(LiteBackend(), settings),)
        if backend == "sonic":
            from .engine.sonic import SonicLoadOptions, load_sonic_backend

            folder = find_sonic_dir(model_dir or sonic_model_dir)
            options = SonicLoadOptions(
                model_dir=folder,
                svd=find_svd(svd_checkpoint, folder),
                dtype=dtype,
                device=comfy_bridge.torch_device(device),
                enable_rife=enable_rife,
            )
            # inside ComfyUI its memory management places the networks (loads before a run, unloads on demand)
            backend_obj = load_sonic_backend(options, memory=comfy_bridge.managed_model)
            return (SonicModel(backend_obj, settings),)
        raise SonicModelError(f"backend: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def find_sonic_dir(choice: str) -> Path:
    """The folder holding unet.pth for a dropdown choice or an explicit path."""
    if choice and choice != DEFAULT_SONIC_DIR and Path(choice).is_absolute():
        candidates = [Path(choice)]
    else:
        sub = "" if choice in ("", DEFAULT_SONIC_DIR) else choice
        candidates = [root / sub for root in comfy_bridge.model_dirs()]
    for folder in candidates:
        if (folder / "unet.pth").is_file():
            return folder
    where = (
        ", ".join(str(d) for d in candidates)
        or "(no models folder is known: with sonic-runner pass --models DIR)"
    )
    raise SonicModelError(
        f"sonic_model_dir: unet.pth not found in {where}; put the Sonic model files in ComfyUI/models/sonic "
        "or name their folder in model_dir"
    )


def find_svd(choice: str, sonic_dir: Path) -> Path:
    """The SVD base for a dropdown choice; (auto) prefers a single file, then a diffusers folder."""
    candidates = _svd_candidates()
    for name in SVD_FOLDER_NAMES:  # a diffusers folder kept next to the Sonic weights
        if _is_diffusers_svd(sonic_dir / name):
            candidates.setdefault(name, sonic_dir / name)
    if choice != AUTO_SVD:
        if choice in candidates:
            return candidates[choice]
        raise SonicModelError(
            f"svd_checkpoint: {choice!r} not found; put svd_xt.safetensors in models/checkpoints"
        )
    if not candidates:
        raise SonicModelError(
            "svd_checkpoint: no SVD base found; put svd_xt.safetensors in ComfyUI/models/checkpoints "
            "or the diffusers folder stable-video-diffusion-img2vid-xt in models/sonic"
        )
    files = [p for p in candidates.values() if p.is_file()]
    return (files or list(candidates.values()))[0]
