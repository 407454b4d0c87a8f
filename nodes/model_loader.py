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
    ) -> tuple[SonicModel] | dict:
        settings = {"backend": backend, "dtype": dtype, "device": device, "enable_rife": enable_rife}
        if backend == "lite":
            from .engine.lite.backend import LiteBackend

            return {
                "ui": {"text": ["model check: lite backend, no model files needed"]},
                "result": (SonicModel(LiteBackend(), settings),),
            }
        if backend == "sonic":
            from .engine.sonic import SonicLoadOptions, load_sonic_backend

            folder, svd, check = check_sonic_files(model_dir or sonic_model_dir, svd_checkpoint)
            options = SonicLoadOptions(
                model_dir=folder,
                svd=svd,
                dtype=dtype,
                device=comfy_bridge.torch_device(device),
                enable_rife=enable_rife,
            )
            # inside ComfyUI its memory management places the networks (loads before a run, unloads on demand)
            backend_obj = load_sonic_backend(options, memory=comfy_bridge.managed_model)
            return {"ui": {"text": ["model check:", *check]}, "result": (SonicModel(backend_obj, settings),)}
        raise SonicModelError(f"backend: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def check_sonic_files(choice: str, svd_choice: str = AUTO_SVD) -> tuple[Path, Path, list[str]]:
    """(model folder, SVD base, "found: ..." lines) once every file the sonic backend needs is there.

    Otherwise one SonicModelError that lists every missing file with the folder it belongs in,
    so a user fixes them all at once instead of meeting them one run at a time.
    """
    from .engine.sonic.loading import found_model_files, missing_model_files

    folder = find_sonic_dir(choice)
    try:
        svd: Path | None = find_svd(svd_choice, folder)
        svd_problem = ""
    except SonicModelError as exc:
        svd, svd_problem = None, str(exc)
    missing = missing_model_files(folder, svd)
    if missing:
        listed = "; ".join(f"{name} not found in {where}" for name, where in missing)
        extra = f" ({svd_problem})" if svd_problem and svd_choice != AUTO_SVD else ""
        raise SonicModelError(
            f"sonic_model_dir: {len(missing)} file(s) the sonic backend needs are missing: {listed}{extra}; "
            "put the Sonic model files in ComfyUI/models/sonic (SVD in models/checkpoints) "
            "or name their folder in model_dir"
        )
    assert svd is not None  # missing_model_files lists an absent SVD base
    return folder, svd, found_model_files(folder, svd)


def find_sonic_dir(choice: str) -> Path:
    """The folder the Sonic files are (or belong) in for a dropdown choice or an explicit path.

    The first candidate holding unet.pth wins; otherwise the first one that exists (or the first one),
    so the missing-files message names a real place.
    """
    if choice and choice != DEFAULT_SONIC_DIR and Path(choice).is_absolute():
        candidates = [Path(choice)]
    else:
        sub = "" if choice in ("", DEFAULT_SONIC_DIR) else choice
        candidates = [root / sub for root in comfy_bridge.model_dirs()]
    if not candidates:
        raise SonicModelError(
            "sonic_model_dir: unet.pth not found (no models folder is known: with sonic-runner pass "
            "--models DIR); put the Sonic model files in ComfyUI/models/sonic or name their folder in model_dir"
        )
    for folder in candidates:
        if (folder / "unet.pth").is_file():
            return folder
    return next((f for f in candidates if f.is_dir()), candidates[0])


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
