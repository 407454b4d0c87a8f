"""Sonic's two audio adapters: whisper windows -> UNet audio tokens, and -> motion buckets.

Module names (proj1/proj2/proj3/norm) are those of the official checkpoints
audio2token.pth and audio2bucket.pth, so their state dicts load unchanged.
Both run in float32 whatever the UNet dtype (their inputs are whisper features
whose small differences matter for lip shape).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SonicConfig


class AudioToTokens(nn.Module):
    """audio2token: a window of whisper states -> `tokens` context tokens for the audio attention.

    Input  [N, window, blocks, channels]; output [N, tokens, dim].
    Full size: 10 x 5 x 384 = 19200 -> 1024 -> 1024 -> 32 x 1024, ReLU, LayerNorm per token.
    """

    def __init__(self, window: int, blocks: int, channels: int, hidden: int, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.dim = dim
        self.proj1 = nn.Linear(window * blocks * channels, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = windows.reshape(windows.shape[0], -1)
        x = torch.relu(self.proj1(x))
        x = torch.relu(self.proj2(x))
        return self.norm(self.proj3(x).reshape(-1, self.tokens, self.dim))


class AudioToBucket(nn.Module):
    """audio2bucket: a long whisper window + the CLIP image embedding -> two motion buckets.

    Input  [N, window, 1, channels] and [N or 1, clip_dim]; output [N, 2] already mapped
    to SVD's motion-bucket range (x16 + 16). Full size: 50 x 384 + 1024 = 20224 -> 1024 -> 1024 -> 2, SiLU.
    """

    def __init__(self, window: int, channels: int, clip_dim: int, hidden: int) -> None:
        super().__init__()
        self.proj1 = nn.Linear(window * channels + clip_dim, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, 2)

    def forward(self, windows: torch.Tensor, clip_embeds: torch.Tensor) -> torch.Tensor:
        x = windows.reshape(windows.shape[0], -1)
        clip = clip_embeds.to(x.dtype).expand(x.shape[0], -1)
        x = torch.cat([x, clip], dim=-1)
        x = nn.functional.silu(self.proj1(x))
        x = nn.functional.silu(self.proj2(x))
        return self.proj3(x) * 16.0 + 16.0


def build_audio_to_tokens(config: SonicConfig) -> AudioToTokens:
    return AudioToTokens(
        window=config.token_window,
        blocks=config.whisper_blocks,
        channels=config.whisper_channels,
        hidden=config.adapter_hidden,
        tokens=config.audio_tokens,
        dim=config.cross_attention_dim,
    )


def build_audio_to_bucket(config: SonicConfig) -> AudioToBucket:
    return AudioToBucket(
        window=config.bucket_window,
        channels=config.whisper_channels,
        clip_dim=int(config.clip["projection_dim"]),
        hidden=config.adapter_hidden,
    )
