"""Build Sonic's networks from a config: the stock diffusers/transformers classes plus our adapters.

Networks are built with their parameters on the `meta` device (no memory, no
random init) and then receive the checkpoint tensors by assignment, so loading
a 1.5B-parameter UNet costs one copy of its weights, not two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .attention import AudioAttentionContext, install_audio_attention
from .audio_adapters import AudioToBucket, AudioToTokens, build_audio_to_bucket, build_audio_to_tokens
from .config import SonicConfig


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create parameters on the meta device while buffers (e.g. CLIP's position_ids) stay real."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


@contextlib.contextmanager
def _maybe_meta(meta: bool) -> Iterator[None]:
    if meta:
        with parameters_on_meta():
            yield
    else:
        yield


def build_unet(config: SonicConfig, context: AudioAttentionContext, meta: bool = True):
    """The SVD UNet with Sonic's audio attention on every attn2."""
    from diffusers import UNetSpatioTemporalConditionModel

    with _maybe_meta(meta):
        unet = UNetSpatioTemporalConditionModel(**config.unet)
        install_audio_attention(unet, context)
    return unet


def build_vae(config: SonicConfig, meta: bool = True, vae_config: dict | None = None):
    from diffusers import AutoencoderKLTemporalDecoder

    kwargs = dict(config.vae) if vae_config is None else vae_config
    with _maybe_meta(meta):
        return AutoencoderKLTemporalDecoder(**kwargs)


def clip_config(config: SonicConfig, overrides: dict | None = None):
    from transformers import CLIPVisionConfig

    kwargs = dict(config.clip)
    if overrides:
        kwargs.update(overrides)
    cfg = CLIPVisionConfig(**kwargs)
    cfg._attn_implementation = "sdpa"
    return cfg


def build_clip(config: SonicConfig, meta: bool = True, cfg=None):
    from transformers import CLIPVisionModelWithProjection

    cfg = cfg if cfg is not None else clip_config(config)
    with _maybe_meta(meta):
        return CLIPVisionModelWithProjection(cfg)


def whisper_config(config: SonicConfig):
    from transformers import WhisperConfig

    cfg = WhisperConfig(**config.whisper)
    cfg._attn_implementation = "sdpa"
    return cfg


def build_whisper_encoder(cfg, meta: bool = True):
    """Only the encoder: Sonic never runs whisper's decoder."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with _maybe_meta(meta):
        return WhisperEncoder(cfg)


def build_adapters(config: SonicConfig, meta: bool = True) -> tuple[AudioToTokens, AudioToBucket]:
    with _maybe_meta(meta):
        return build_audio_to_tokens(config), build_audio_to_bucket(config)


def official_unet_key_shapes(config: SonicConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every tensor in the official unet.pth for this architecture.

    Derived from the architecture (the stock SVD UNet plus the audio projections),
    built on the meta device so the full size costs no memory.
    """
    unet = build_unet(config, AudioAttentionContext(), meta=True)
    return {name: tuple(t.shape) for name, t in unet.state_dict().items()}


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def assert_materialized(module: nn.Module, what: str) -> None:
    """Fail loudly if any tensor was left on the meta device (a loader bug, not a user error)."""
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_meta:
            raise RuntimeError(f"{what}: tensor {name} was never loaded")


def materialize_random(module: nn.Module, seed: int, std: float = 0.02, device: str = "cpu") -> nn.Module:
    """Give a meta-built module random real weights (random checkpoints for tests and benchmarks).

    Norm weights start at 1 and biases at 0, other weights ~ N(0, std): enough
    for shapes, compute and memory to be those of the real model. Real buffers
    (e.g. CLIP's position_ids) are kept.
    """
    generator = torch.Generator(device).manual_seed(seed)
    for sub_name, sub in module.named_modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            full = f"{sub_name}.{name}"
            data = torch.empty(p.shape, dtype=torch.float32, device=device)
            if name == "bias":
                data.zero_()
            elif p.ndim == 1 and ("norm" in full or "ln" in full):
                data.fill_(1.0)
            else:
                data.normal_(0.0, std, generator=generator)
            sub._parameters[name] = nn.Parameter(data, requires_grad=False)
    return module.to(device)
