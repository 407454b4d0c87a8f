"""Portrait input: checks an image's size before decoding it, then converts it to uint8 RGB.

Why check first: a 20000x20000 photo is 1.2 GB as uint8 and 4.8 GB as the float
tensor ComfyUI hands us. The size limits are checked on the file header or the
tensor's shape, so a bad input fails in milliseconds with a message that says
what to do instead of exhausting memory halfway through preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import SonicInputError

MIN_SIDE = 64  # smaller than this holds no face the detector can find
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000  # 40 MP: a phone photo is ~12-48 MP; beyond this the crop gains nothing
# The brightest value a float IMAGE in 0..1 may hold: resampling and sharpening overshoot 1.0 a
# little (clamped), but a value above this means the tensor is in 0..255.
UNIT_RANGE_LIMIT = 2.0


def check_unit_range(peak: float, input_name: str = "image") -> None:
    """Refuse a float IMAGE scaled 0..255 instead of ComfyUI's 0..1.

    Clamped to 0..1 it would turn white (PreData then finds "no face", VideoEncode writes a white
    clip). It is refused rather than rescaled: a guess could be wrong both ways (an overshooting
    0..1 image, a dark 0..255 one), and every other node would mishandle the same tensor, so the
    fix belongs to the node that made it.
    """
    if peak > UNIT_RANGE_LIMIT:
        raise SonicInputError(
            input_name,
            f"the IMAGE holds values up to {peak:g}, but an IMAGE must be floats in 0..1 (this looks like 0..255)",
            "divide it by 255, or fix the node that made it",
        )


def check_image_size(width: int, height: int, input_name: str = "image") -> None:
    """Raise SonicInputError when an image of this size cannot (or should not) be processed."""
    if width < 1 or height < 1:
        raise SonicInputError(
            input_name, f"the image is empty ({width}x{height})", "connect a real portrait photo"
        )
    if min(width, height) < MIN_SIDE:
        raise SonicInputError(
            input_name,
            f"the image is too small ({width}x{height}; the short side must be at least {MIN_SIDE} px)",
            "use a portrait photo at least 256 px on its short side",
        )
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise SonicInputError(
            input_name,
            f"the image is too large ({width}x{height}; limits are {MAX_SIDE} px per side and "
            f"{MAX_PIXELS // 1_000_000} MP)",
            "downscale it (e.g. to 2048 px on the long side) before loading",
        )


def load_image(path: str | Path, input_name: str = "image") -> np.ndarray:
    """Decode an image file to uint8 RGB [H, W, 3] (EXIF orientation applied).

    RGBA/LA/palette transparency is composited on white, greyscale becomes RGB,
    16-bit and float images are scaled to 8 bit.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SonicInputError(
            input_name, f"file not found: {path}", "give the path of an existing image file"
        )
    try:
        with Image.open(path) as img:  # lazy: reads the header only
            check_image_size(img.width, img.height, input_name)
            img = ImageOps.exif_transpose(img)
            return pil_to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise SonicInputError(
            input_name,
            f"{path.name} is too large ({exc})",
            "downscale it (e.g. to 2048 px on the long side) before loading",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SonicInputError(
            input_name,
            f"cannot decode {path.name} ({type(exc).__name__}: {exc})",
            "use a JPEG, PNG or WebP photo",
        ) from None


def pil_to_rgb(img: Any) -> np.ndarray:
    """Any PIL mode -> uint8 RGB array."""
    mode = img.mode
    if mode.startswith("I;16"):
        return grey_to_rgb(_to_uint8(np.asarray(img).astype(np.uint16)))
    if mode in ("I", "F"):
        return grey_to_rgb(_to_uint8(np.asarray(img)))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("L", "1"):
        return grey_to_rgb(np.asarray(img.convert("L")))
    elif mode == "LA":
        img = img.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(img)
    if arr.shape[-1] == 4:
        return composite_on_white(arr[..., :3], arr[..., 3])
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit / 32-bit integer / float single-channel data -> uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    a = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        peak = float(np.nanmax(a)) if a.size else 1.0
        scale = 255.0 if peak <= 1.0 else 255.0 / max(peak, 1.0)
    else:
        peak = float(a.max()) if a.size else 0.0
        scale = 1.0 if peak <= 255 else 255.0 / 65535.0  # 16-bit data (PIL gives it as "I" or "I;16")
    return np.clip(np.nan_to_num(a) * scale + 0.5, 0, 255).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend `rgb` over a white background using `alpha` (both uint8 or both float 0..1)."""
    if rgb.dtype == np.uint8:
        a = alpha.astype(np.float32)[..., None] / 255.0
        out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    a = alpha[..., None]
    return rgb * a + (1.0 - a)


def image_from_comfy(image: Any, input_name: str = "image") -> np.ndarray:
    """ComfyUI IMAGE (float [B, H, W, C] in 0..1, torch or numpy) -> first image as uint8 RGB [H, W, 3].

    The shape is checked before anything is converted, so an oversized tensor
    (even a broadcast view that owns no memory) is rejected without a copy.
    """
    shape = tuple(int(s) for s in getattr(image, "shape", ()))
    if len(shape) == 3:
        shape = (1, *shape)
        image = image[None]
    if len(shape) != 4:
        raise SonicInputError(
            input_name,
            f"expected an IMAGE of shape [B, H, W, C], got {list(shape)}",
            "connect a Load Image node",
        )
    batch, height, width, channels = shape
    if batch < 1:
        raise SonicInputError(
            input_name, "the IMAGE batch is empty", "connect a Load Image node with one portrait"
        )
    check_image_size(width, height, input_name)
    if channels not in (1, 2, 3, 4):
        raise SonicInputError(
            input_name, f"the IMAGE has {channels} channels", "use an RGB, RGBA or greyscale image"
        )
    first = image[0]
    if hasattr(first, "detach"):  # torch tensor; torch itself is never imported here
        first = first.detach().cpu()
        if str(first.dtype) in ("torch.bfloat16", "torch.float16"):
            first = first.float()
        first = first.numpy()
    arr = np.asarray(first)
    out = np.empty((height, width, 3), np.uint8)
    for y in range(0, height, _ROWS_PER_PASS):  # bounded temporaries even for a 40 MP image
        out[y : y + _ROWS_PER_PASS] = _rows_to_uint8(arr[y : y + _ROWS_PER_PASS], channels, input_name)
    return out


_ROWS_PER_PASS = 512


def _rows_to_uint8(arr: np.ndarray, channels: int, input_name: str = "image") -> np.ndarray:
    if arr.dtype == np.uint8:
        f = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float32) / 65535.0
    else:
        f = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        if f.size:
            check_unit_range(float(f.max()), input_name)
        np.clip(f, 0.0, 1.0, out=f)
    if channels in (2, 4):
        f = composite_on_white(f[..., :-1], f[..., -1])
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def check_rgb_uint8(image: np.ndarray, input_name: str = "image") -> None:
    """Validate an engine-side image (what prepare() receives)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{getattr(image, 'dtype', type(image).__name__)} {list(getattr(image, 'shape', []))}"
        raise SonicInputError(
            input_name,
            f"expected a uint8 RGB array [H, W, 3], got {desc}",
            "convert it with image_input.load_image() or image_from_comfy()",
        )
    check_image_size(int(image.shape[1]), int(image.shape[0]), input_name)
