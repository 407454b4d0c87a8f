"""Loading the official files strictly: key facts of the full-size model, and errors that name file and key."""

from __future__ import annotations

import shutil

import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicModelError
from comfyui_sonic.nodes.engine.sonic import (
    SonicLoadOptions,
    load_sonic_backend,
    official_unet_key_shapes,
    write_random_checkpoint,
)
from comfyui_sonic.nodes.engine.sonic.attention import AudioAttentionContext
from comfyui_sonic.nodes.engine.sonic.config import FULL, TINY
from comfyui_sonic.nodes.engine.sonic.loading import load_svd, load_unet, read_state_dict
from comfyui_sonic.nodes.engine.sonic.models import build_vae, parameter_count


def test_full_size_unet_keys_match_the_official_checkpoint_facts():
    shapes = official_unet_key_shapes(FULL)  # built on the meta device: no memory
    audio = {k: v for k, v in shapes.items() if ".attn2.processor.to_" in k}
    assert len(shapes) == 1492  # 1428 stock SVD UNet tensors + 64 audio projections
    assert len(audio) == 64
    assert 1.575e9 < parameter_count(shapes) < 1.577e9
    # bias-free Linear(1024 -> hidden) on every attn2, spatial and temporal
    assert shapes["down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.0.weight"] == (
        320,
        1024,
    )
    assert shapes[
        "mid_block.attentions.0.temporal_transformer_blocks.0.attn2.processor.to_v_ip.0.weight"
    ] == (
        1280,
        1024,
    )
    assert sum("temporal_transformer_blocks" in k for k in audio) == 32
    assert shapes["conv_in.weight"] == (320, 8, 3, 3) and shapes["conv_out.weight"] == (4, 320, 3, 3)
    assert shapes["add_embedding.linear_1.weight"] == (1280, 768)  # 3 time ids x 256


def test_audio_adapter_shapes_are_the_official_ones():
    from comfyui_sonic.nodes.engine.sonic.models import build_adapters

    tokens, bucket = build_adapters(FULL, meta=True)
    assert {k: tuple(v.shape) for k, v in tokens.state_dict().items()} == {
        "proj1.weight": (1024, 19200),
        "proj1.bias": (1024,),
        "proj2.weight": (1024, 1024),
        "proj2.bias": (1024,),
        "proj3.weight": (32768, 1024),
        "proj3.bias": (32768,),
        "norm.weight": (1024,),
        "norm.bias": (1024,),
    }
    assert tuple(bucket.state_dict()["proj1.weight"].shape) == (1024, 20224)
    assert tuple(bucket.state_dict()["proj3.weight"].shape) == (2, 1024)


def test_a_state_dict_with_the_official_names_loads_strictly(tiny_checkpoint):
    path = tiny_checkpoint["model_dir"] / "unet.pth"
    state = read_state_dict(path)
    assert set(state) == set(official_unet_key_shapes(TINY))
    unet = load_unet(tiny_checkpoint["model_dir"], TINY, AudioAttentionContext())
    loaded = unet.state_dict()
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.0.weight"
    assert torch.equal(loaded[key], state[key])


@pytest.fixture
def model_copy(tiny_checkpoint, tmp_path):
    folder = tmp_path / "sonic"
    shutil.copytree(tiny_checkpoint["model_dir"], folder)
    return folder


def _edit(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def test_missing_key_names_the_file_and_the_key(model_copy):
    key = "mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_v_ip.0.weight"
    _edit(model_copy / "unet.pth", lambda s: s.pop(key))
    with pytest.raises(SonicModelError) as info:
        load_unet(model_copy, TINY, AudioAttentionContext())
    assert "unet.pth" in str(info.value) and key in str(info.value) and "missing" in str(info.value)


def test_extra_key_names_the_file_and_the_key(model_copy):
    _edit(model_copy / "audio2token.pth", lambda s: s.update({"proj4.weight": torch.zeros(1)}))
    options = SonicLoadOptions(model_dir=model_copy, svd=model_copy / "svd", device="cpu", config="tiny")
    with pytest.raises(SonicModelError) as info:
        load_sonic_backend(options)
    assert "audio2token.pth" in str(info.value) and "proj4.weight" in str(info.value)


def test_wrong_shape_names_the_key(model_copy):
    _edit(model_copy / "audio2bucket.pth", lambda s: s.update({"proj3.weight": torch.zeros(3, 64)}))
    options = SonicLoadOptions(model_dir=model_copy, svd=model_copy / "svd", device="cpu", config="tiny")
    with pytest.raises(SonicModelError, match=r"audio2bucket\.pth.*proj3\.weight.*shape"):
        load_sonic_backend(options)


def test_missing_files_say_which(model_copy, tmp_path):
    (model_copy / "unet.pth").unlink()
    with pytest.raises(SonicModelError, match=r"unet\.pth: file not found"):
        load_unet(model_copy, TINY, AudioAttentionContext())
    with pytest.raises(SonicModelError, match="does not exist"):
        load_svd(tmp_path / "nothing.safetensors", TINY)


def test_rife_file_loads_strictly_and_is_optional(model_copy):
    from comfyui_sonic.nodes.engine.sonic.loading import load_rife

    assert load_rife(model_copy, TINY.rife_channels) is not None
    _edit(model_copy / "RIFE" / "flownet.pkl", lambda s: s.pop("module.block_tea.conv2.2.bias"))
    with pytest.raises(SonicModelError, match=r"flownet\.pkl.*block_tea\.conv2\.2\.bias"):
        load_rife(model_copy, TINY.rife_channels)
    (model_copy / "RIFE" / "flownet.pkl").unlink()
    assert load_rife(model_copy, TINY.rife_channels) is None


def test_comfyui_single_file_svd_gives_the_same_vae_and_clip_as_the_folder(tmp_path):
    paths = write_random_checkpoint(tmp_path / "single", "tiny", seed=3, svd_format="single_file", rife=False)
    single = load_svd(paths["svd"], TINY)
    # the same random weights, written as a diffusers folder
    folder = write_random_checkpoint(tmp_path / "folder", "tiny", seed=3, svd_format="folder", rife=False)
    reference = load_svd(folder["svd"], TINY)
    for a, b in ((single.vae, reference.vae), (single.clip, reference.clip)):
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert single.scheduler_config["prediction_type"] == "v_prediction"


def test_single_file_with_a_missing_vae_key_names_it(tmp_path):
    from safetensors.torch import load_file, save_file

    paths = write_random_checkpoint(tmp_path / "single", "tiny", seed=3, svd_format="single_file", rife=False)
    state = load_file(str(paths["svd"]))
    key = "first_stage_model.decoder.conv_out.time_mix_conv.weight"
    state.pop(key)
    save_file(state, str(paths["svd"]))
    with pytest.raises(SonicModelError) as info:
        load_svd(paths["svd"], TINY)
    assert key in str(info.value) and "svd_xt_random.safetensors" in str(info.value)


def test_full_size_vae_maps_to_stability_names_both_ways():
    from comfyui_sonic.nodes.engine.sonic.loading import vae_sgm_name

    keys = list(build_vae(FULL, meta=True).state_dict())
    names = {vae_sgm_name(k, 4) for k in keys}
    assert len(names) == len(keys)
    # facts of the Stability layout (first_stage_model.* in svd_xt.safetensors)
    assert (
        vae_sgm_name("decoder.mid_block.resnets.0.time_mixer.mix_factor", 4)
        == "decoder.mid.block_1.mix_factor"
    )
    assert vae_sgm_name("decoder.time_conv_out.weight", 4) == "decoder.conv_out.time_mix_conv.weight"
    assert (
        vae_sgm_name("decoder.up_blocks.0.resnets.2.temporal_res_block.conv2.bias", 4)
        == "decoder.up.3.block.2.time_stack.out_layers.3.bias"
    )
    assert vae_sgm_name("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", 4) == (
        "encoder.down.1.block.0.nin_shortcut.weight"
    )
    assert (
        vae_sgm_name("decoder.mid_block.attentions.0.to_out.0.weight", 4)
        == "decoder.mid.attn_1.proj_out.weight"
    )


def test_forcing_the_wrong_architecture_names_the_file(tiny_checkpoint):
    options = SonicLoadOptions(
        model_dir=tiny_checkpoint["model_dir"], svd=tiny_checkpoint["svd"], device="cpu", config="full"
    )
    with pytest.raises(SonicModelError, match=r"unet\.pth: (missing key|unexpected key|key .* has shape)"):
        load_sonic_backend(options)


def test_clip_position_ids_saved_by_old_transformers_are_accepted(tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    svd = tmp_path / "svd"
    shutil.copytree(tiny_checkpoint["svd"], svd)
    weights = svd / "image_encoder" / "model.safetensors"
    state = load_file(str(weights))
    state["vision_model.embeddings.position_ids"] = torch.arange(257)[None]
    save_file(state, str(weights))
    assert load_svd(svd, TINY).clip is not None


def test_a_corrupt_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "unet.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SonicModelError) as info:
        read_state_dict(bad)
    message = str(info.value)
    assert "unet.pth: cannot be read" in message and "\n" not in message
