"""Portrait input: odd formats are converted, impossible sizes fail at once with a one-line fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.engine.image_input import image_from_comfy, load_image
from PIL import Image


def assert_one_line_error(excinfo, input_name: str, *words: str) -> None:
    message = str(excinfo.value)
    assert message.startswith(f"{input_name}: ") and "\n" not in message
    for word in words:
        assert word in message


def test_an_rgb_file_loads_as_uint8_rgb(tmp_path, face_image):
    path = tmp_path / "face.png"
    Image.fromarray(face_image).save(path)
    rgb = load_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == face_image.shape
    assert np.array_equal(rgb, face_image)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere
    rgba[:40, :, 3] = 255  # top half opaque, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png")
    assert rgb.shape == (80, 80, 3)
    assert tuple(rgb[10, 10]) == (200, 0, 0)
    assert tuple(rgb[70, 10]) == (255, 255, 255)


def test_greyscale_becomes_three_equal_channels(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (64, 64, 3)
    assert (
        np.array_equal(rgb[..., 0], grey)
        and np.array_equal(rgb[..., 1], grey)
        and np.array_equal(rgb[..., 2], grey)
    )


def test_sixteen_bit_is_scaled_to_eight_bit(tmp_path):
    deep = np.zeros((64, 64), np.uint16)
    deep[:, :32] = 65535
    deep[:, 32:] = 32896  # 128 * 257
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    rgb = load_image(tmp_path / "d.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert rgb[0, 0, 0] == 255 and rgb[0, 40, 0] == 128


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((100, 200, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (200, 100, 3)


def test_a_one_pixel_image_is_refused(tmp_path):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "1.png")
    with pytest.raises(SonicInputError) as excinfo:
        load_image(tmp_path / "1.png")
    assert_one_line_error(excinfo, "image", "1x1", "too small")


def test_an_image_under_64_px_is_refused(tmp_path):
    Image.fromarray(np.zeros((40, 300, 3), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(SonicInputError) as excinfo:
        load_image(tmp_path / "thin.png")
    assert_one_line_error(excinfo, "image", "300x40", "too small")


@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000), (9000, 100)])
def test_huge_images_are_refused_from_the_header_alone(tmp_path, make_header_only_png, size):
    path = make_header_only_png(tmp_path / "huge.png", *size)
    with pytest.raises(SonicInputError) as excinfo:
        load_image(path)  # the file has no pixel data: only the header can have been read
    assert_one_line_error(excinfo, "image", "too large", "downscale")


def test_a_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(SonicInputError) as excinfo:
        load_image(path)
    assert_one_line_error(excinfo, "image", "broken.jpg")


def test_comfy_image_batch_gives_its_first_image_as_uint8():
    batch = torch.zeros(2, 64, 80, 3)
    batch[0, ..., 1] = 1.0
    batch[1] = 0.5
    rgb = image_from_comfy(batch)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 80, 3)
    assert tuple(rgb[0, 0]) == (0, 255, 0)


def test_comfy_rgba_greyscale_and_out_of_range_values():
    rgba = torch.ones(1, 64, 64, 4) * torch.tensor([1.0, 0.0, 0.0, 0.0])  # fully transparent red
    assert tuple(image_from_comfy(rgba)[5, 5]) == (255, 255, 255)
    grey = torch.full((1, 64, 64, 1), 0.5)
    assert tuple(image_from_comfy(grey)[0, 0]) == (128, 128, 128)
    wild = torch.full((1, 64, 64, 3), 1.5)  # a filter's overshoot past 1.0 is clamped
    wild[0, 0, 0] = float("nan")
    wild[0, 0, 1] = float("inf")
    out = image_from_comfy(wild)
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0 and out[0, 0, 1] == 0


def test_a_comfy_image_scaled_0_to_255_is_refused_not_whitened():
    # Clamped, it would be a white square and "no face found"; the message says the IMAGE must be 0..1.
    photo = torch.rand(1, 64, 64, 3) * 255.0
    with pytest.raises(SonicInputError) as excinfo:
        image_from_comfy(photo, "image")
    assert_one_line_error(excinfo, "image", "must be floats in 0..1", "divide it by 255")


def test_a_huge_comfy_tensor_is_refused_before_any_copy():
    # A broadcast view: the shape of a 20000x20000 image with 12 bytes of storage.
    huge = torch.zeros(1, 1, 1, 3).expand(1, 20000, 20000, 3)
    with pytest.raises(SonicInputError) as excinfo:
        image_from_comfy(huge)
    assert_one_line_error(excinfo, "image", "20000x20000", "downscale")


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (0, 64, 64, 3), (64, 64), (1, 64, 64, 5)])
def test_unusable_comfy_tensors_are_refused(shape):
    with pytest.raises(SonicInputError) as excinfo:
        image_from_comfy(torch.zeros(shape))
    assert_one_line_error(excinfo, "image")
