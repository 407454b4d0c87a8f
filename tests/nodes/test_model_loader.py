"""SONIC_ModelLoader's file check: every missing file named at once, and what was found shown."""

from __future__ import annotations

import shutil

import pytest
from comfyui_sonic.nodes.engine.errors import SonicModelError
from comfyui_sonic.nodes.engine.sonic import write_random_checkpoint
from comfyui_sonic.nodes.model_loader import SONIC_ModelLoader, check_sonic_files


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("sonic_files"), "tiny", seed=0)


def test_an_empty_folder_lists_every_missing_file_in_one_message(tmp_path):
    with pytest.raises(SonicModelError) as info:
        SONIC_ModelLoader().load(backend="sonic", model_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    for name in (
        "unet.pth",
        "audio2token.pth",
        "audio2bucket.pth",
        "whisper-tiny/config.json",
        "whisper-tiny/preprocessor_config.json",
        "svd_xt.safetensors",
    ):
        assert f"{name} not found in" in message, name
    assert f"unet.pth not found in {tmp_path}" in message
    assert message.startswith("sonic_model_dir: 7 file(s) the sonic backend needs are missing")


def test_only_the_files_that_are_missing_are_listed(complete, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(complete["model_dir"], folder)
    (folder / "audio2bucket.pth").unlink()
    (folder / "whisper-tiny" / "preprocessor_config.json").unlink()
    with pytest.raises(SonicModelError) as info:
        check_sonic_files(str(folder))
    message = str(info.value)
    assert "2 file(s)" in message
    assert f"audio2bucket.pth not found in {folder}" in message
    assert f"whisper-tiny/preprocessor_config.json not found in {folder / 'whisper-tiny'}" in message
    assert "unet.pth not found" not in message


def test_a_complete_folder_passes_and_the_check_says_what_was_found(complete):
    folder, svd, lines = check_sonic_files(str(complete["model_dir"]))
    assert folder == complete["model_dir"] and svd.exists()
    assert f"found: {folder / 'unet.pth'}" in lines
    assert any(line.startswith("found: SVD base") for line in lines)


def test_the_lite_backend_reports_that_it_needs_no_files():
    out = SONIC_ModelLoader().load(backend="lite")
    assert out["ui"]["text"] == ["model check: lite backend, no model files needed"]
    assert out["result"][0].settings["backend"] == "lite"


def test_errors_carry_a_short_readable_type_name():
    """ComfyUI shows `module.QualName`; the runner matches the last name (runner/host_errors.py)."""
    from comfyui_sonic.runner.host_errors import exception_class_name

    full = f"{SonicModelError.__module__}.{SonicModelError.__qualname__}"
    assert full == "sonic.SonicModelError"
    assert exception_class_name(full) == "SonicModelError"
