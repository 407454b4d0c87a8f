"""The pieces behave as the official Sonic code does: audio windows, attention, Euler step, windows, retiming."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from comfyui_sonic.nodes.engine.sonic.attention import AudioAttentionContext, AudioAttnProcessor
from comfyui_sonic.nodes.engine.sonic.audio_features import AudioWindows, generated_frame_count
from comfyui_sonic.nodes.engine.sonic.config import FULL, SVD_SCHEDULER_CONFIG, TINY
from comfyui_sonic.nodes.engine.sonic.interpolate import IFNet, Retimer, interpolate_stream
from comfyui_sonic.nodes.engine.sonic.sampler import euler_step, make_schedule, window_indices


def test_frame_count_is_one_per_two_audio_frames():
    assert generated_frame_count(16000 * 10, FULL) == 125  # 10 s -> 250 audio frames -> 125 at 12.5 fps
    assert generated_frame_count(100, FULL) == 1


def test_windows_are_the_official_slices():
    # token i of a fake whisper output carries value i + 1 so slices can be read back
    tokens = 40
    states = torch.arange(1, tokens + 1, dtype=torch.float32)[:, None, None].expand(tokens, 3, 2)
    padded = torch.cat([torch.zeros(4, 3, 2), states, torch.zeros(6, 3, 2)])
    last = torch.arange(1, tokens + 1, dtype=torch.float32)[:, None].expand(tokens, 2)
    padded_last = torch.cat([torch.zeros(24, 2), last, torch.zeros(26, 2)])
    w = AudioWindows(padded, padded_last, frames=10, config=TINY)
    tok = w.token_windows(0, 10)
    assert tok.shape == (10, 10, 3, 2)
    # frame i = padded[4i : 4i + 10]: frame 0 starts with 4 zeros, then tokens 1..6
    assert tok[0, :, 0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert tok[3, :, 0, 0].tolist() == list(range(9, 19))
    buck = w.bucket_windows(2, 5)
    assert buck.shape == (3, 50, 1, 2)
    assert buck[0, :, 0, 0].tolist() == [0.0] * 16 + list(range(1, 35))


def test_euler_step_equals_diffusers_scheduler_step():
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(SVD_SCHEDULER_CONFIG)
    scheduler.set_timesteps(5)
    schedule = make_schedule(SVD_SCHEDULER_CONFIG, 5)
    assert schedule.sigmas[0] == 700.0 and schedule.sigmas[-1] == 0.0
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 3, 3, generator=g) * 50
    v = torch.randn(2, 4, 3, 3, generator=g)
    for i, t in enumerate(scheduler.timesteps):
        expected = scheduler.step(v, t, sample).prev_sample
        ours = euler_step(sample, v, schedule.sigmas[i], schedule.sigmas[i + 1])
        torch.testing.assert_close(ours, expected)
        sample = expected


def test_windows_shift_and_wrap_around():
    # 30 frames, windows of 25: starts 0 and 25, moved back by the shift, indices circular
    first = window_indices(30, 25, shift=0)
    assert [w[0].item() for w in first] == [0, 25] and first[1][-1].item() == (25 + 24) % 30
    shifted = window_indices(30, 25, shift=7)
    assert shifted[0][0].item() == 23 and shifted[0][7].item() == 0
    # fewer frames than a window: one window that repeats frames
    assert window_indices(6, 8, shift=3)[0].tolist() == [3, 4, 5, 0, 1, 2, 3, 4]


def _official_style_temporal(attn, proc, hidden, ctx_per_frame, audio_per_frame, batch, frames, hw):
    """Reference: the official spatial2time (frame mean, repeated for every position) + two SDPAs."""
    heads = attn.heads

    def to_time(x):
        x = x.reshape(batch, frames, *x.shape[1:]).mean(1, keepdim=True)
        return x.repeat(1, hw, 1, 1).reshape(batch * hw, *x.shape[2:])

    ctx, audio = to_time(ctx_per_frame), to_time(audio_per_frame)
    q = attn.to_q(hidden)

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(attn.to_k(ctx)), split(attn.to_v(ctx)))
    aud = F.scaled_dot_product_attention(
        split(q), split(proc.to_k_ip[0](audio)), split(proc.to_v_ip[0](audio))
    )
    merged = (out + aud).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
    return attn.to_out[0](merged)


def test_temporal_audio_attention_sees_the_frame_mean():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    batch, frames, hw, dim, cross = 3, 4, 6, 16, 8
    attn = Attention(query_dim=dim, cross_attention_dim=cross, heads=2, dim_head=8)
    context = AudioAttentionContext()
    proc = AudioAttnProcessor(dim, cross, context, temporal=True)
    attn.set_processor(proc)
    hidden = torch.randn(batch * hw, frames, dim)
    image_ctx = torch.randn(batch, 1, cross).repeat_interleave(frames, 0)  # same for every frame
    audio = torch.randn(batch * frames, 5, cross)
    # what stock diffusers passes to a temporal attn2: first frame's context, broadcast to every position
    time_ctx = image_ctx.reshape(batch, frames, 1, cross)[:, 0][:, None].expand(batch, hw, 1, cross)
    with torch.no_grad(), context.bound(audio, batch, frames, None, (2, 3), levels=1):
        ours = attn(hidden, encoder_hidden_states=time_ctx.reshape(batch * hw, 1, cross))
        ref = _official_style_temporal(attn, proc, hidden, image_ctx, audio, batch, frames, hw)
    torch.testing.assert_close(ours, ref)


def test_spatial_audio_attention_is_masked_to_the_face():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)
    context = AudioAttentionContext()
    attn.set_processor(AudioAttnProcessor(16, 8, context, temporal=False))
    hidden = torch.randn(2, 16, 16)  # 2 frames of a 4x4 grid
    image_ctx = torch.randn(2, 1, 8)
    mask = torch.zeros(32, 32)
    mask[:16, :16] = 1.0  # face in the top-left quarter of the pixels
    loud, quiet = torch.randn(2, 5, 8) * 5, torch.zeros(2, 5, 8)
    outs = []
    with torch.no_grad():
        for tokens in (loud, quiet):
            with context.bound(tokens, 1, 2, mask, (4, 4), levels=1):
                outs.append(attn(hidden, encoder_hidden_states=image_ctx))
    diff = (outs[0] - outs[1]).abs().sum(-1).reshape(2, 4, 4)
    assert diff[:, 0, 0].min() > 1e-3  # inside the face: audio matters
    assert diff[:, 3, 3].max() < 1e-4  # far outside: none


def test_ifnet_has_the_official_key_names_and_interpolation_streams():
    net = IFNet(16).eval()
    keys = set(net.state_dict())
    for key in ("block0.conv0.0.0.weight", "block0.conv0.1.1.weight", "block2.convblock3.1.0.bias",
                "block1.conv1.2.weight", "block_tea.conv0.0.0.weight", "block_tea.conv2.1.weight"):  # fmt: skip
        assert key in keys
    assert tuple(net.state_dict()["block_tea.conv0.0.0.weight"].shape) == (8, 14, 3, 3)
    frames = torch.rand(7, 3, 64, 64)
    out = torch.cat(list(interpolate_stream([frames[:3], frames[3:5], frames[5:]], net, batch=2)))
    assert out.shape[0] == 2 * 7 - 1
    torch.testing.assert_close(out[::2], frames)  # originals kept, mids in between
    whole = torch.cat(list(interpolate_stream([frames], net, batch=8)))
    torch.testing.assert_close(out, whole)  # streaming in chunks changes nothing


def test_retimer_gives_exactly_the_promised_count():
    for src, dst, n_src, total in ((25.0, 25.0, 249, 250), (12.5, 30.0, 20, 48), (25.0, 12.5, 10, 5)):
        r = Retimer(src, dst, total)
        frames = np.arange(n_src, dtype=np.uint8)[:, None, None, None]
        got = [r.push(frames[i : i + 4]) for i in range(0, n_src, 4)] + [r.finish()]
        out = np.concatenate([g for g in got if g is not None])
        assert out.shape[0] == total
        assert out[0, 0, 0, 0] == 0 and np.all(np.diff(out[:, 0, 0, 0].astype(int)) >= 0)


def test_whisper_states_are_embeddings_plus_every_layer_with_the_last_normed():
    from comfyui_sonic.nodes.engine.sonic.audio_features import whisper_states
    from comfyui_sonic.nodes.engine.sonic.models import (
        build_whisper_encoder,
        materialize_random,
        whisper_config,
    )

    encoder = materialize_random(build_whisper_encoder(whisper_config(TINY)), 0, std=0.2).eval()
    mel = torch.randn(1, 80, 3000)
    states, last = whisper_states(encoder, mel)
    assert states.shape == (1500, TINY.whisper_blocks, TINY.whisper_channels)
    reference = encoder(mel, output_hidden_states=True)
    torch.testing.assert_close(last, reference.last_hidden_state[0])
    for i, h in enumerate(reference.hidden_states):
        torch.testing.assert_close(states[:, i], h[0])
