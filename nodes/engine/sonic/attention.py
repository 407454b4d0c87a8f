"""Sonic's audio cross-attention, added to every attn2 of the stock diffusers SVD UNet.

Each attn2 keeps its image cross-attention (to_k/to_v on the CLIP embedding)
and adds a second, separately soft-maxed attention over the audio tokens with
its own bias-free projections `to_k_ip.0` / `to_v_ip.0` (Linear(cross_dim ->
hidden)); the two results are summed. As a module the processor sits at
`...attn2.processor`, so the official unet.pth keys
`...attn2.processor.to_k_ip.0.weight` load unchanged.

- Spatial attn2 (`transformer_blocks`): frame f attends to frame f's audio tokens;
  the audio result is multiplied by the face mask resized (bicubic) to the grid.
- Temporal attn2 (`temporal_transformer_blocks`): attends to the mean over the
  window's frames of the audio tokens, with no mask.

The stock UNet forward has no way to pass the audio tokens down, so the sampler
binds them for one UNet call on an `AudioAttentionContext` shared by all the
processors (`with context.bound(...)`); nothing stays bound after the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class _Binding:
    batch: int  # guidance branches in this UNet call (3)
    frames: int  # frames per branch
    spatial_tokens: torch.Tensor  # [batch*frames, T, C]
    temporal_tokens: torch.Tensor  # [batch, T, C]: frame mean
    masks: dict[int, torch.Tensor]  # grid size (h*w) -> [1, h*w, 1]; empty = no mask
    scale: float


class AudioAttentionContext:
    """Per-call audio conditioning read by every audio attention processor."""

    def __init__(self) -> None:
        self._binding: _Binding | None = None

    @contextlib.contextmanager
    def bound(
        self,
        spatial_tokens: torch.Tensor,
        batch: int,
        frames: int,
        face_mask: torch.Tensor | None,
        latent_size: tuple[int, int],
        levels: int,
        scale: float = 1.0,
    ) -> Iterator[None]:
        """Bind audio tokens [batch*frames, T, C] (and the pixel face mask [H, W]) for one UNet call."""
        temporal = spatial_tokens.reshape(batch, frames, *spatial_tokens.shape[1:]).mean(dim=1)
        masks = (
            grid_masks(face_mask, latent_size, levels, spatial_tokens.dtype) if face_mask is not None else {}
        )
        self._binding = _Binding(batch, frames, spatial_tokens, temporal, masks, scale)
        try:
            yield
        finally:
            self._binding = None

    def get(self) -> _Binding:
        if self._binding is None:
            raise RuntimeError("Sonic audio attention called outside AudioAttentionContext.bound()")
        return self._binding


def grid_masks(
    face_mask: torch.Tensor, latent_size: tuple[int, int], levels: int, dtype: torch.dtype
) -> dict[int, torch.Tensor]:
    """The pixel mask [H, W] resized (bicubic, as diffusers' IP-adapter masks) to each UNet grid."""
    masks = {}
    h, w = latent_size
    src = face_mask.to(torch.float32)[None, None]
    for level in range(levels):
        gh, gw = max(1, h >> level), max(1, w >> level)
        small = F.interpolate(src, size=(gh, gw), mode="bicubic", align_corners=False)
        masks[gh * gw] = small.reshape(1, gh * gw, 1).to(dtype)
    return masks


def _heads(x: torch.Tensor, batch: int, heads: int) -> torch.Tensor:
    """[batch, seq, heads*d] -> [batch, heads, seq, d]."""
    return x.reshape(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[batch, heads, seq, d] -> [batch, seq, heads*d]."""
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


class AudioAttnProcessor(nn.Module):
    """attn2 processor: image cross-attention + audio cross-attention (see module doc)."""

    def __init__(
        self, hidden_size: int, cross_attention_dim: int, context: AudioAttentionContext, temporal: bool
    ) -> None:
        super().__init__()
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.temporal = temporal
        # a plain attribute (not a submodule): shared, holds no weights
        object.__setattr__(self, "context", context)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        binding = self.context.get()
        if self.temporal:
            out = self._temporal(attn, hidden_states, encoder_hidden_states, binding)
        else:
            out = self._spatial(attn, hidden_states, encoder_hidden_states, binding)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    def _spatial(self, attn, hidden_states, context, binding: _Binding) -> torch.Tensor:
        rows, queries, _ = hidden_states.shape  # [batch*frames, h*w, C]
        heads = attn.heads
        q = _heads(attn.to_q(hidden_states), rows, heads)
        k = _heads(attn.to_k(context), rows, heads)
        v = _heads(attn.to_v(context), rows, heads)
        out = _merge(F.scaled_dot_product_attention(q, k, v))
        tokens = binding.spatial_tokens.to(hidden_states.dtype)
        ak = _heads(self.to_k_ip[0](tokens), rows, heads)
        av = _heads(self.to_v_ip[0](tokens), rows, heads)
        audio = _merge(F.scaled_dot_product_attention(q, ak, av))
        mask = binding.masks.get(queries)
        if mask is not None:
            audio = audio * mask
        return out + binding.scale * audio

    def _temporal(self, attn, hidden_states, context, binding: _Binding) -> torch.Tensor:
        # hidden_states [batch*h*w, frames, C]; every spatial position of one batch item
        # attends to the same keys, so fold positions into the query length.
        rows, frames, _ = hidden_states.shape
        batch = binding.batch
        heads = attn.heads
        query = attn.to_q(hidden_states)
        q = _heads(query.reshape(batch, -1, query.shape[-1]), batch, heads)
        # stock diffusers broadcasts the first frame's context to every position: take one
        ctx = context.reshape(batch, rows // batch, *context.shape[1:])[:, 0]
        k = _heads(attn.to_k(ctx), batch, heads)
        v = _heads(attn.to_v(ctx), batch, heads)
        out = _merge(F.scaled_dot_product_attention(q, k, v))
        tokens = binding.temporal_tokens.to(hidden_states.dtype)
        ak = _heads(self.to_k_ip[0](tokens), batch, heads)
        av = _heads(self.to_v_ip[0](tokens), batch, heads)
        audio = _merge(F.scaled_dot_product_attention(q, ak, av))
        out = out + binding.scale * audio
        return out.reshape(rows, frames, -1)


def _hidden_size(unet, name: str) -> int:
    channels = unet.config.block_out_channels
    if name.startswith("mid_block"):
        return channels[-1]
    block = int(name.split(".")[1])
    if name.startswith("up_blocks"):
        return list(reversed(channels))[block]
    return channels[block]


def install_audio_attention(unet, context: AudioAttentionContext) -> int:
    """Put an AudioAttnProcessor on every attn2 of `unet` (in place); returns how many."""
    processors = {}
    count = 0
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            processors[name] = AudioAttnProcessor(
                hidden_size=_hidden_size(unet, name),
                cross_attention_dim=unet.config.cross_attention_dim,
                context=context,
                temporal="temporal_transformer_blocks" in name,
            )
            count += 1
        else:
            processors[name] = proc
    unet.set_attn_processor(processors)
    return count
