"""Write a complete Sonic model folder with random weights, official file names and key names.

For tests (tiny config, CPU, seconds) and benchmarks (full config: compute and
memory do not depend on the weight values). Never used for real output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..types import Audio, SonicData
from .attention import AudioAttentionContext
from .config import SVD_SCHEDULER_CONFIG, get_config
from .loading import (
    AUDIO2BUCKET_FILE,
    AUDIO2TOKEN_FILE,
    RIFE_FILE,
    UNET_FILE,
    WHISPER_DIR,
    diffusers_to_sgm_vae,
    hf_to_open_clip,
)
from .models import build_adapters, build_clip, build_unet, build_vae, materialize_random


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def write_random_checkpoint(
    folder: Path, config: str = "tiny", seed: int = 0, svd_format: str = "folder", rife: bool = True
) -> dict[str, Path]:
    """Create `folder` with unet.pth, audio2token.pth, audio2bucket.pth, whisper-tiny/, RIFE/flownet.pkl
    and the SVD base (`svd/` diffusers folder, or `svd_xt_random.safetensors` with svd_format="single_file").

    Returns {"model_dir": folder, "svd": path of the SVD base}.
    """
    import json

    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor, WhisperModel

    from .interpolate import IFNet
    from .models import parameters_on_meta, whisper_config

    cfg = get_config(config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    unet = materialize_random(build_unet(cfg, AudioAttentionContext(), meta=True), seed)
    torch.save(_state(unet), folder / UNET_FILE)
    del unet
    to_tokens, to_bucket = build_adapters(cfg, meta=True)
    torch.save(_state(materialize_random(to_tokens, seed + 1)), folder / AUDIO2TOKEN_FILE)
    torch.save(_state(materialize_random(to_bucket, seed + 2)), folder / AUDIO2BUCKET_FILE)

    whisper_dir = folder / WHISPER_DIR
    wcfg = whisper_config(cfg)
    with parameters_on_meta():
        whisper = WhisperModel(wcfg)
    materialize_random(whisper, seed + 3)
    whisper.save_pretrained(str(whisper_dir), safe_serialization=True)
    WhisperFeatureExtractor(feature_size=int(cfg.whisper["num_mel_bins"])).save_pretrained(str(whisper_dir))
    del whisper

    if rife:
        with parameters_on_meta():
            net = IFNet(cfg.rife_channels)
        materialize_random(net, seed + 4, std=0.05)
        (folder / RIFE_FILE).parent.mkdir(parents=True, exist_ok=True)
        # the official file was saved from a DataParallel model: keys carry "module."
        torch.save({f"module.{k}": v for k, v in _state(net).items()}, folder / RIFE_FILE)

    vae = materialize_random(build_vae(cfg, meta=True), seed + 5)
    with torch.no_grad():  # SVD's quant_conv is the identity
        vae.quant_conv.weight.copy_(torch.eye(8).reshape(8, 8, 1, 1))
        vae.quant_conv.bias.zero_()
    clip = materialize_random(build_clip(cfg, meta=True), seed + 6)
    if svd_format == "single_file":
        svd = folder / "svd_xt_random.safetensors"
        tensors = {**diffusers_to_sgm_vae(_state(vae)), **hf_to_open_clip(_state(clip))}
        # a few unrelated tensors a real file also holds (UNet weights etc.): must be ignored
        tensors["model.diffusion_model.input_blocks.0.0.bias"] = torch.zeros(4)
        save_file(tensors, str(svd))
    elif svd_format == "folder":
        svd = folder / "svd"
        vae.save_pretrained(str(svd / "vae"), safe_serialization=True)
        clip.save_pretrained(str(svd / "image_encoder"), safe_serialization=True)
        (svd / "scheduler").mkdir(parents=True, exist_ok=True)
        sched = {"_class_name": "EulerDiscreteScheduler", **SVD_SCHEDULER_CONFIG}
        (svd / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))
    else:
        raise ValueError(f"svd_format: {svd_format!r} is not 'folder' or 'single_file'")
    return {"model_dir": folder, "svd": svd}


def random_models(config: str = "full", seed: int = 0, device: str = "cpu", rife: bool = True):
    """Every Sonic network with random weights, built directly on `device` (no files).

    For benchmarks: a full-size UNet is created on the GPU in seconds, and compute
    and memory are those of the real weights.
    """
    from transformers import WhisperFeatureExtractor

    from .backend import SonicModels
    from .interpolate import IFNet
    from .models import build_whisper_encoder, parameters_on_meta, whisper_config

    cfg = get_config(config)
    context = AudioAttentionContext()
    unet = materialize_random(build_unet(cfg, context, meta=True), seed, device=device).eval()
    to_tokens, to_bucket = build_adapters(cfg, meta=True)
    vae = materialize_random(build_vae(cfg, meta=True), seed + 5, device=device).eval()
    clip = materialize_random(build_clip(cfg, meta=True), seed + 6, device=device).eval()
    whisper = materialize_random(
        build_whisper_encoder(whisper_config(cfg), meta=True), seed + 3, device=device
    )
    net = None
    if rife:
        with parameters_on_meta():
            net = IFNet(cfg.rife_channels)
        net = materialize_random(net, seed + 4, std=0.05, device=device).eval()
    return SonicModels(
        config=cfg,
        unet=unet,
        context=context,
        vae=vae,
        clip=clip,
        scheduler_config=dict(SVD_SCHEDULER_CONFIG),
        feature_extractor=WhisperFeatureExtractor(feature_size=int(cfg.whisper["num_mel_bins"])),
        whisper=whisper.eval(),
        audio_to_tokens=materialize_random(to_tokens, seed + 1, device=device).eval(),
        audio_to_bucket=materialize_random(to_bucket, seed + 2, device=device).eval(),
        rife=net,
    )


def random_prepared_data(
    duration: float = 1.0, size: int = 64, seed: int = 0, min_resolution: int = 512
) -> SonicData:
    """Prepared input for the random model: random pixels, a centred face mask, noise audio.

    The random weights do not care what the picture shows; tests and the
    benchmark only need the shapes, the mask and the audio length to be real.
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.float32)
    q = size // 4
    mask[q : size - q, q : size - q] = 1.0
    audio = (rng.standard_normal(int(16000 * duration)) * 0.1).astype(np.float32)
    return SonicData(
        image=image,
        face_box=(q, q, size - q, size - q),
        face_mask=mask,
        crop_box=(0, 0, size, size),
        original=image,
        audio_16k=audio,
        audio=Audio(audio[None], 16000),
        duration=duration,
        min_resolution=min_resolution,  # the tier an out-of-memory error names
        expand_ratio=0.5,
    )
