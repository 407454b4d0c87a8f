"""Load the official Sonic files and the SVD base, strictly.

Every state dict must match its network key for key and shape: a missing or
an unexpected key is a SonicModelError that names the file and the key (a
wrong or truncated download is found at load time, not as garbage video).

The SVD base comes either as a diffusers folder (vae/, image_encoder/,
scheduler/) or as ComfyUI's single file svd_xt*.safetensors (Stability's
original layout: `first_stage_model.*` for the VAE, `conditioner.embedders.0.
open_clip.model.visual.*` for the CLIP ViT-H image tower). Only the VAE, the
image encoder and the scheduler settings are used: the UNet comes from unet.pth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import SonicModelError
from .attention import AudioAttentionContext
from .config import SVD_SCHEDULER_CONFIG, SonicConfig
from .models import (
    assert_materialized,
    build_adapters,
    build_clip,
    build_unet,
    build_vae,
    build_whisper_encoder,
    clip_config,
)

UNET_FILE = "unet.pth"
AUDIO2TOKEN_FILE = "audio2token.pth"
AUDIO2BUCKET_FILE = "audio2bucket.pth"
WHISPER_DIR = "whisper-tiny"
RIFE_FILE = "RIFE/flownet.pkl"

SGM_VAE_PREFIX = "first_stage_model."
SGM_CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."


# ---------------------------------------------------------------- reading files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors / torch file, on the CPU (memory-mapped where the format allows)."""
    path = Path(path)
    if not path.is_file():
        raise SonicModelError(f"{path}: file not found; put the official Sonic weights there")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickle: no mmap
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except SonicModelError:
        raise
    except Exception as exc:  # corrupt / truncated / not a checkpoint
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SonicModelError(
            f"{path}: cannot be read as a checkpoint ({detail}); download it again"
        ) from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise SonicModelError(f"{path}: is not a state dict of tensors; use the official checkpoint file")
    return data


# Buffers older transformers releases saved and current ones recompute (CLIP's position_ids in
# SVD's image_encoder/): present or not, they carry no weights, so they are dropped, not refused.
_DERIVED_KEYS = re.compile(r"(^|\.)position_ids$")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Assign `state` to a (meta-built) module; any missing/extra key or wrong shape names `source`."""
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if not (_DERIVED_KEYS.search(k) and k not in expected)}
    for key in expected:
        if key not in state:
            raise SonicModelError(
                f"{source}: missing key {key!r}; the file does not match Sonic's architecture"
            )
    for key in state:
        if key not in expected:
            raise SonicModelError(
                f"{source}: unexpected key {key!r}; the file does not match Sonic's architecture"
            )
    for key, want in expected.items():
        if tuple(state[key].shape) != tuple(want.shape):
            raise SonicModelError(
                f"{source}: key {key!r} has shape {tuple(state[key].shape)}, expected {tuple(want.shape)}"
            )
    module.load_state_dict(state, strict=True, assign=True)
    assert_materialized(module, source)
    module.requires_grad_(False)
    return module.eval()


# ---------------------------------------------------------------- the Sonic files


def load_unet(
    model_dir: Path, config: SonicConfig, context: AudioAttentionContext, state: dict | None = None
):
    path = Path(model_dir) / UNET_FILE
    unet = build_unet(config, context, meta=True)
    return load_strict(unet, read_state_dict(path) if state is None else state, str(path))


def detect_config(unet_state: dict, source: str) -> str:
    """Which architecture ("full" or "tiny") a unet.pth state dict is, from its first convolution."""
    from .config import CONFIGS

    shape = tuple(unet_state["conv_in.weight"].shape) if "conv_in.weight" in unet_state else None
    for name, cfg in CONFIGS.items():
        if shape == (cfg.unet["block_out_channels"][0], cfg.unet["in_channels"], 3, 3):
            return name
    raise SonicModelError(f"{source}: conv_in.weight has shape {shape}; not a Sonic UNet checkpoint")


def load_adapters(model_dir: Path, config: SonicConfig):
    to_tokens, to_bucket = build_adapters(config, meta=True)
    p1 = Path(model_dir) / AUDIO2TOKEN_FILE
    p2 = Path(model_dir) / AUDIO2BUCKET_FILE
    return load_strict(to_tokens, read_state_dict(p1), str(p1)), load_strict(
        to_bucket, read_state_dict(p2), str(p2)
    )


def _first_existing(folder: Path, names: list[str], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise SonicModelError(f"{folder}: no {what} weights found (looked for {', '.join(names)})")


_WEIGHT_NAMES = [
    "model.safetensors",
    "diffusion_pytorch_model.safetensors",
    "model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin",
    "pytorch_model.fp16.bin",
    "diffusion_pytorch_model.fp16.bin",
]


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _WEIGHT_NAMES)


def missing_model_files(model_dir: Path, svd: Path | None) -> list[tuple[str, str]]:
    """Every file the sonic backend needs that is not there, as (file, where it belongs).

    Checked all at once, before anything is loaded, so a user fixes them in one go rather
    than meeting them one run at a time. Optional files (RIFE/flownet.pkl) are not listed.
    """
    folder = Path(model_dir)
    missing: list[tuple[str, str]] = []
    for name in (UNET_FILE, AUDIO2TOKEN_FILE, AUDIO2BUCKET_FILE):
        if not (folder / name).is_file():
            missing.append((name, str(folder)))
    whisper = folder / WHISPER_DIR
    for name in ("config.json", "preprocessor_config.json"):
        if not (whisper / name).is_file():
            missing.append((f"{WHISPER_DIR}/{name}", str(whisper)))
    if not _has_weights(whisper):
        missing.append((f"{WHISPER_DIR}/model.safetensors (or pytorch_model.bin)", str(whisper)))
    if svd is None or not Path(svd).exists():
        missing.append(
            (
                "svd_xt.safetensors",
                "ComfyUI/models/checkpoints (or the diffusers folder stable-video-diffusion-img2vid-xt "
                "in models/sonic)",
            )
        )
    elif Path(svd).is_dir():
        svd = Path(svd)
        for sub, config in (
            ("vae", "config.json"),
            ("image_encoder", "config.json"),
            ("scheduler", "scheduler_config.json"),
        ):
            if not (svd / sub / config).is_file():
                missing.append((f"{sub}/{config}", str(svd / sub)))
            if sub != "scheduler" and not _has_weights(svd / sub):
                missing.append((f"{sub}/diffusion_pytorch_model.safetensors", str(svd / sub)))
    return missing


def found_model_files(model_dir: Path, svd: Path | None) -> list[str]:
    """What is there, one short line per file, for the loader's "model check" text."""
    folder = Path(model_dir)
    names = [UNET_FILE, AUDIO2TOKEN_FILE, AUDIO2BUCKET_FILE, WHISPER_DIR, RIFE_FILE]
    lines = [f"{'found' if (folder / n).exists() else 'missing'}: {folder / n}" for n in names]
    lines.append(f"{'found' if svd is not None and Path(svd).exists() else 'missing'}: SVD base {svd or '-'}")
    if not (folder / RIFE_FILE).is_file():
        lines.append("(RIFE/flownet.pkl is optional: without it frames are repeated to reach the fps)")
    return lines


def load_whisper(model_dir: Path):
    """whisper-tiny/ in Hugging Face format -> (feature extractor, encoder). The decoder is not used."""
    from transformers import WhisperConfig, WhisperFeatureExtractor

    folder = Path(model_dir) / WHISPER_DIR
    if not (folder / "config.json").is_file():
        raise SonicModelError(f"{folder}: whisper-tiny folder (config.json, weights) not found")
    cfg = WhisperConfig.from_pretrained(str(folder), local_files_only=True)
    cfg._attn_implementation = "sdpa"
    extractor_file = folder / "preprocessor_config.json"
    if not extractor_file.is_file():
        raise SonicModelError(f"{extractor_file}: missing; whisper-tiny needs its preprocessor_config.json")
    extractor = WhisperFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    weights = _first_existing(folder, _WEIGHT_NAMES, "whisper")
    state = read_state_dict(weights)
    encoder_state = {}
    for key, value in state.items():
        bare = key[len("model.") :] if key.startswith("model.") else key
        if bare.startswith("encoder."):
            encoder_state[bare[len("encoder.") :]] = value
        elif not (bare.startswith("decoder.") or bare.startswith("proj_out.")):
            raise SonicModelError(f"{weights}: unexpected key {key!r}; not a whisper checkpoint")
    encoder = build_whisper_encoder(cfg, meta=True)
    load_strict(encoder, encoder_state, f"{weights} (encoder.*)")
    return extractor, encoder


# ---------------------------------------------------------------- SVD base


@dataclass
class SvdParts:
    vae: nn.Module
    clip: nn.Module
    scheduler_config: dict


def load_svd(svd: Path | None, config: SonicConfig) -> SvdParts:
    if svd is None:
        raise SonicModelError("svd: no SVD base given; choose svd_xt*.safetensors or a diffusers folder")
    svd = Path(svd)
    if svd.is_dir():
        return _load_svd_folder(svd, config)
    if svd.is_file():
        return _load_svd_single_file(svd, config)
    raise SonicModelError(f"svd: {svd} does not exist; choose svd_xt*.safetensors or a diffusers folder")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SonicModelError(f"{path}: missing; the SVD diffusers folder is incomplete")
    return json.loads(path.read_text())


def _load_svd_folder(folder: Path, config: SonicConfig) -> SvdParts:
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig

    from .models import parameters_on_meta

    vae_cfg = _read_json(folder / "vae" / "config.json")
    with parameters_on_meta():
        vae = AutoencoderKLTemporalDecoder.from_config(vae_cfg)
    vae_file = _first_existing(folder / "vae", _WEIGHT_NAMES, "VAE")
    load_strict(vae, read_state_dict(vae_file), str(vae_file))

    _read_json(folder / "image_encoder" / "config.json")
    clip_cfg = CLIPVisionConfig.from_pretrained(str(folder / "image_encoder"), local_files_only=True)
    clip_cfg._attn_implementation = "sdpa"
    clip = build_clip(config, meta=True, cfg=clip_cfg)
    clip_file = _first_existing(folder / "image_encoder", _WEIGHT_NAMES, "image encoder")
    load_strict(clip, read_state_dict(clip_file), str(clip_file))

    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    return SvdParts(vae=vae, clip=clip, scheduler_config=scheduler)


def _load_svd_single_file(path: Path, config: SonicConfig) -> SvdParts:
    state = read_state_dict(path)
    vae = build_vae(config, meta=True)
    vae_state = sgm_to_diffusers_vae(state, list(vae.state_dict()), str(path))
    load_strict(vae, vae_state, f"{path} ({SGM_VAE_PREFIX}*)")
    clip = build_clip(config, meta=True, cfg=clip_config(config))
    clip_state = open_clip_to_hf(state, list(clip.state_dict()), str(path))
    load_strict(clip, clip_state, f"{path} ({SGM_CLIP_PREFIX}*)")
    return SvdParts(vae=vae, clip=clip, scheduler_config=dict(SVD_SCHEDULER_CONFIG))


# ---- key mapping: diffusers AutoencoderKLTemporalDecoder <-> Stability (sgm) layout

_TEMPORAL = {"norm1": "time_stack.in_layers.0", "conv1": "time_stack.in_layers.2",
             "norm2": "time_stack.out_layers.0", "conv2": "time_stack.out_layers.3"}  # fmt: skip
_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet_rest(rest: str) -> str:
    """Inside one resnet: diffusers names -> sgm names (spatial, temporal, mixer)."""
    m = re.match(r"spatial_res_block\.(.*)", rest)
    if m:
        rest = m.group(1)
    m = re.match(r"temporal_res_block\.(norm1|conv1|norm2|conv2)\.(.*)", rest)
    if m:
        return f"{_TEMPORAL[m.group(1)]}.{m.group(2)}"
    if rest == "time_mixer.mix_factor":
        return "mix_factor"
    return rest.replace("conv_shortcut", "nin_shortcut")


def vae_sgm_name(key: str, up_blocks: int) -> str:
    """The sgm name (without `first_stage_model.`) of a diffusers VAE key."""
    side, _, rest = key.partition(".")
    if side == "quant_conv":
        return key
    m = re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{side}.down.{m.group(1)}.block.{m.group(2)}.{_resnet_rest(m.group(3))}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.(.*)", rest)
    if m:
        return f"{side}.down.{m.group(1)}.downsample.{m.group(2)}"
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{side}.up.{up_blocks - 1 - int(m.group(1))}.block.{m.group(2)}.{_resnet_rest(m.group(3))}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest)
    if m:
        return f"{side}.up.{up_blocks - 1 - int(m.group(1))}.upsample.{m.group(2)}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{side}.mid.block_{int(m.group(1)) + 1}.{_resnet_rest(m.group(2))}"
    m = re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", rest)
    if m:
        return f"{side}.mid.attn_1.{_ATTN[m.group(1)]}.{m.group(2)}"
    fixed = {"conv_norm_out": "norm_out", "time_conv_out": "conv_out.time_mix_conv"}
    head, _, leaf = rest.rpartition(".")
    return f"{side}.{fixed.get(head, head)}.{leaf}"


def _is_attn_matrix(key: str) -> bool:
    return "mid_block.attentions.0.to_" in key and key.endswith(".weight")


def sgm_to_diffusers_vae(state: dict, diffusers_keys: list[str], source: str) -> dict:
    """Pick and rename the VAE tensors of a Stability-layout file (strict both ways).

    SVD's sgm autoencoder has no quant_conv; diffusers' has one, identity in the
    converted SVD release, so it is filled with the identity when the file has none.
    """
    up_blocks = 1 + max(int(k.split(".")[2]) for k in diffusers_keys if k.startswith("decoder.up_blocks."))
    out, used = {}, set()
    for key in diffusers_keys:
        name = SGM_VAE_PREFIX + vae_sgm_name(key, up_blocks)
        if name not in state:
            if key.startswith("quant_conv."):
                continue
            raise SonicModelError(f"{source}: missing key {name!r} (VAE {key}); not an SVD checkpoint")
        tensor = state[name]
        if _is_attn_matrix(key) and tensor.ndim == 4:
            tensor = tensor[:, :, 0, 0]
        out[key] = tensor
        used.add(name)
    if "quant_conv.weight" not in out:
        channels = 2 * 4
        out["quant_conv.weight"] = torch.eye(channels).reshape(channels, channels, 1, 1)
        out["quant_conv.bias"] = torch.zeros(channels)
    for name in state:
        if name.startswith(SGM_VAE_PREFIX) and name not in used:
            raise SonicModelError(f"{source}: unexpected key {name!r} in the VAE part; not an SVD checkpoint")
    return out


def diffusers_to_sgm_vae(vae_state: dict) -> dict:
    """Inverse of sgm_to_diffusers_vae (writes test files in ComfyUI's single-file layout)."""
    keys = list(vae_state)
    up_blocks = 1 + max(int(k.split(".")[2]) for k in keys if k.startswith("decoder.up_blocks."))
    out = {}
    for key, tensor in vae_state.items():
        if key.startswith("quant_conv."):
            continue  # sgm has none
        if _is_attn_matrix(key):
            tensor = tensor[:, :, None, None]
        out[SGM_VAE_PREFIX + vae_sgm_name(key, up_blocks)] = tensor
    return out


# ---- key mapping: transformers CLIPVisionModelWithProjection <-> open_clip VisionTransformer

_CLIP_FIXED = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
    "visual_projection.weight": "proj",  # transposed
}
_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


def _clip_open_name(key: str) -> tuple[str, int | None]:
    """open_clip name of an HF CLIP vision key, and the q/k/v third it takes from in_proj (or None)."""
    if key in _CLIP_FIXED:
        return _CLIP_FIXED[key], None
    m = re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.*)\.(weight|bias)$", key)
    if not m:
        raise KeyError(key)
    layer, mod, leaf = m.groups()
    base = f"transformer.resblocks.{layer}."
    m2 = re.match(r"self_attn\.(q_proj|k_proj|v_proj)$", mod)
    if m2:
        return f"{base}attn.in_proj_{leaf}", _QKV[m2.group(1)]
    return f"{base}{_CLIP_LAYER[mod]}.{leaf}", None


def open_clip_to_hf(state: dict, hf_keys: list[str], source: str) -> dict:
    out, used = {}, set()
    for key in hf_keys:
        try:
            name, third = _clip_open_name(key)
        except KeyError:
            raise SonicModelError(f"{source}: no open_clip name for CLIP key {key!r}") from None
        full = SGM_CLIP_PREFIX + name
        if full not in state:
            raise SonicModelError(f"{source}: missing key {full!r} (CLIP {key}); not an SVD checkpoint")
        tensor = state[full]
        if third is not None:
            tensor = tensor.chunk(3, dim=0)[third]
        elif key == "visual_projection.weight":
            tensor = tensor.t()
        out[key] = tensor.contiguous()
        used.add(full)
    for name in state:
        if name.startswith(SGM_CLIP_PREFIX) and name not in used:
            raise SonicModelError(f"{source}: unexpected key {name!r} in the image encoder part")
    return out


def hf_to_open_clip(clip_state: dict) -> dict:
    """Inverse of open_clip_to_hf (writes test files in ComfyUI's single-file layout)."""
    out, thirds = {}, {}
    for key, tensor in clip_state.items():
        name, third = _clip_open_name(key)
        if third is not None:
            thirds.setdefault(name, [None, None, None])[third] = tensor
        elif key == "visual_projection.weight":
            out[SGM_CLIP_PREFIX + name] = tensor.t().contiguous()
        else:
            out[SGM_CLIP_PREFIX + name] = tensor
    for name, parts in thirds.items():
        out[SGM_CLIP_PREFIX + name] = torch.cat(parts, dim=0)
    return out


# ---------------------------------------------------------------- RIFE


def load_rife(model_dir: Path, channels: int):
    """RIFE/flownet.pkl -> IFNet, or None when the file is absent (then frames are repeated, not interpolated)."""
    from .interpolate import IFNet
    from .models import parameters_on_meta

    path = Path(model_dir) / RIFE_FILE
    if not path.is_file():
        return None
    state = read_state_dict(path)
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    with parameters_on_meta():
        net = IFNet(channels)
    return load_strict(net, state, str(path))
