"""Speech -> per-frame audio conditioning, with the official window arithmetic.

Whisper-tiny's encoder sees the 16 kHz audio in 30 s chunks (its fixed input
length) and gives 50 tokens/s; Sonic keeps, per token, every hidden state
(embeddings + each layer, the last one layer-normed) for audio2token and the
final state for audio2bucket. One audio frame is 640 samples (25 fps) = 2
tokens; one generated frame covers two audio frames (12.5 fps), so frame i
starts at token 4*i. Token windows are 10 wide (zero padding 4 before, 6
after); bucket windows 50 wide (24 before, 26 after).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import SonicConfig

SAMPLE_RATE = 16000
CHUNK_SECONDS = 30
SAMPLES_PER_AUDIO_FRAME = 640


@dataclass
class AudioWindows:
    """Whisper states laid out so that frame i's windows are rows of an unfold (no copies)."""

    token_states: torch.Tensor  # [pad_before + T + pad_after, blocks, channels] float32
    bucket_states: torch.Tensor  # [pad_before + T + pad_after, channels] float32
    frames: int  # generated frames (12.5 fps)
    config: SonicConfig

    def token_windows(self, start: int, stop: int) -> torch.Tensor:
        """[n, window, blocks, channels] for generated frames start..stop-1."""
        return _windows(self.token_states, start, stop, self.config.token_window, self.config.token_stride)

    def bucket_windows(self, start: int, stop: int) -> torch.Tensor:
        """[n, window, 1, channels] for generated frames start..stop-1."""
        w = _windows(self.bucket_states, start, stop, self.config.bucket_window, self.config.token_stride)
        return w.unsqueeze(2)


def _windows(states: torch.Tensor, start: int, stop: int, width: int, stride: int) -> torch.Tensor:
    rows = states[start * stride : (stop - 1) * stride + width]
    return rows.unfold(0, width, stride).movedim(-1, 1)


def generated_frame_count(num_samples: int, config: SonicConfig) -> int:
    """Frames Sonic generates for this much 16 kHz audio (at least one)."""
    audio_frames = num_samples // SAMPLES_PER_AUDIO_FRAME
    return max(1, audio_frames // config.frame_step)


@torch.no_grad()
def whisper_states(encoder, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run whisper's encoder on mel [1, 80, 3000]; returns (all states [T, L+1, C], last [T, C]).

    Written out layer by layer so the stacked states are exactly the official
    ones (embeddings, layers 1..L-1, then layer L after the final layer norm),
    independent of how a transformers release records hidden states.
    """
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    states = [x]
    for layer in encoder.layers:
        x = layer(x, None)
        if isinstance(x, tuple):
            x = x[0]
        states.append(x)
    last = encoder.layer_norm(x)
    states[-1] = last
    return torch.stack(states, dim=2)[0], last[0]


def mel_chunks(audio_16k: np.ndarray, feature_extractor) -> list[torch.Tensor]:
    """Log-mel input of each 30 s chunk, each padded by whisper's extractor to 3000 frames."""
    chunk = CHUNK_SECONDS * SAMPLE_RATE
    audio = np.asarray(audio_16k, dtype=np.float32)
    if audio.size == 0:
        audio = np.zeros(SAMPLES_PER_AUDIO_FRAME, dtype=np.float32)
    out = []
    for start in range(0, audio.size, chunk):
        feats = feature_extractor(
            audio[start : start + chunk], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        )
        out.append(feats.input_features)
    return out


@torch.no_grad()
def audio_windows(
    audio_16k: np.ndarray, feature_extractor, encoder, config: SonicConfig, device: torch.device
) -> AudioWindows:
    """Whisper features of the whole clip, trimmed to 2 tokens per audio frame and padded for the windows."""
    all_states, last_states = [], []
    for mel in mel_chunks(audio_16k, feature_extractor):
        states, last = whisper_states(encoder, mel.to(device=device, dtype=torch.float32))
        all_states.append(states)
        last_states.append(last)
    states = torch.cat(all_states)
    last = torch.cat(last_states)
    frames = generated_frame_count(len(audio_16k), config)
    tokens = (len(audio_16k) // SAMPLES_PER_AUDIO_FRAME) * config.tokens_per_audio_frame
    states, last = states[:tokens], last[:tokens]
    # the last window must exist even for clips shorter than one generated frame
    need = (frames - 1) * config.token_stride

    def pad(x: torch.Tensor, before: int, after: int, width: int) -> torch.Tensor:
        after = max(after, need + width - before - x.shape[0])
        shape_b = (before, *x.shape[1:])
        shape_a = (after, *x.shape[1:])
        return torch.cat([x.new_zeros(shape_b), x, x.new_zeros(shape_a)])

    return AudioWindows(
        token_states=pad(states, *config.token_pad, config.token_window),
        bucket_states=pad(last, *config.bucket_pad, config.bucket_window),
        frames=frames,
        config=config,
    )


@torch.no_grad()
def frame_conditioning(
    windows: AudioWindows,
    audio_to_tokens,
    audio_to_bucket,
    clip_embeds: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    batch: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per generated frame: audio tokens [F, T, C], the "no audio" tokens [T, C], motion buckets [F, 2].

    The unconditional tokens are audio2token of a zero window (as the official
    code), which is the same for every frame, so it is computed once. The adapters
    run in float32; tokens are stored in `dtype` (the UNet's) batch by batch.
    """
    tokens, buckets = [], []
    clip = clip_embeds.float().reshape(1, -1)
    for start in range(0, windows.frames, batch):
        stop = min(windows.frames, start + batch)
        tokens.append(audio_to_tokens(windows.token_windows(start, stop)).to(dtype))
        buckets.append(audio_to_bucket(windows.bucket_windows(start, stop), clip))
    zero = windows.token_windows(0, 1).new_zeros(windows.token_windows(0, 1).shape)
    uncond = audio_to_tokens(zero)[0]
    return torch.cat(tokens), uncond.to(dtype), torch.cat(buckets)
