"""Architecture and sampling constants of Sonic, full size and a tiny twin for CPU tests.

The full-size numbers are facts of the official release (jixiaozhong/Sonic at
51a74ae and the stable-video-diffusion-img2vid-xt base it fine-tunes). The tiny
config keeps every structural choice (block types, the ip-attention on every
attn2, the adapter layouts, the window arithmetic) and shrinks only widths and
depths, so a random tiny checkpoint exercises exactly the code paths of the real
one in seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Scheduler settings of stable-video-diffusion-img2vid-xt (scheduler/scheduler_config.json).
# Used when the SVD base comes as a single file, which carries no scheduler config.
SVD_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "trained_betas": None,
    "use_karras_sigmas": True,
}

# CLIP image normalisation (CLIPImageProcessor defaults, the SVD feature_extractor).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SonicConfig:
    """Everything that fixes tensor shapes, plus the official sampling constants."""

    name: str
    # UNet (diffusers UNetSpatioTemporalConditionModel kwargs)
    unet: dict[str, Any]
    # VAE (diffusers AutoencoderKLTemporalDecoder kwargs)
    vae: dict[str, Any]
    # CLIP vision tower (transformers CLIPVisionConfig kwargs)
    clip: dict[str, Any]
    # Whisper encoder (transformers WhisperConfig kwargs)
    whisper: dict[str, Any]
    # IFNet width (RIFE HDv3 uses 90)
    rife_channels: int = 90
    # audio adapters
    audio_tokens: int = 32  # context tokens per frame from audio2token
    adapter_hidden: int = 1024  # intermediate width of both adapters
    token_window: int = 10  # whisper tokens per generated frame (audio2token)
    token_pad: tuple[int, int] = (4, 6)
    bucket_window: int = 50  # whisper tokens per generated frame (audio2bucket)
    bucket_pad: tuple[int, int] = (24, 26)
    # sampling
    audio_frame_rate: float = 25.0  # audio "frames": 640 samples at 16 kHz
    tokens_per_audio_frame: int = 2  # whisper gives 50 tokens/s
    frame_step: int = 2  # one generated frame per 2 audio frames -> 12.5 fps
    generation_fps: float = 12.5  # also the fps time id of the UNet
    window: int = 25  # frames per UNet call (n_sample_frames)
    window_shift: int = 7  # window start moves by this many frames each step
    decode_chunk: int = 8  # frames per VAE decode call
    ip_scale: float = 1.0
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SVD_SCHEDULER_CONFIG))

    @property
    def whisper_blocks(self) -> int:
        """Hidden states Sonic stacks per whisper token: embeddings + every layer."""
        return int(self.whisper["encoder_layers"]) + 1

    @property
    def whisper_channels(self) -> int:
        return int(self.whisper["d_model"])

    @property
    def cross_attention_dim(self) -> int:
        return int(self.unet["cross_attention_dim"])

    @property
    def token_stride(self) -> int:
        """Whisper tokens between consecutive generated frames (4)."""
        return self.tokens_per_audio_frame * self.frame_step


_SVD_UNET = dict(
    sample_size=96,
    in_channels=8,
    out_channels=4,
    down_block_types=(
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ),
    up_block_types=(
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ),
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    transformer_layers_per_block=1,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=25,
)

_SVD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
    force_upcast=True,
)

# laion CLIP-ViT-H-14 vision tower as shipped in SVD's image_encoder/
_SVD_CLIP = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=16,
    patch_size=14,
    image_size=224,
    projection_dim=1024,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)

# openai/whisper-tiny
_WHISPER_TINY = dict(
    d_model=384,
    encoder_layers=4,
    decoder_layers=4,
    encoder_attention_heads=6,
    decoder_attention_heads=6,
    encoder_ffn_dim=1536,
    decoder_ffn_dim=1536,
    num_mel_bins=80,
    max_source_positions=1500,
)

FULL = SonicConfig(name="full", unet=_SVD_UNET, vae=_SVD_VAE, clip=_SVD_CLIP, whisper=_WHISPER_TINY)

TINY = SonicConfig(
    name="tiny",
    unet=dict(
        _SVD_UNET,
        sample_size=8,
        block_out_channels=(32, 32, 64, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=(1, 1, 2, 2),
        num_frames=8,
    ),
    vae=dict(_SVD_VAE, block_out_channels=(32, 32, 32, 32), layers_per_block=1, sample_size=64),
    clip=dict(
        _SVD_CLIP,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    ),
    whisper=dict(
        _WHISPER_TINY,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    ),
    rife_channels=16,
    audio_tokens=4,
    adapter_hidden=64,
    window=8,
    window_shift=3,
    decode_chunk=4,
)

CONFIGS = {"full": FULL, "tiny": TINY}


def get_config(name: str) -> SonicConfig:
    """Look a config up by name ("full" for the real weights, "tiny" for tests)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"config: unknown Sonic config {name!r}; use one of {sorted(CONFIGS)}") from None
