"""A face-detection set made only from what registry packages ship and what we draw ourselves.

Why: the detector must find the faces Sonic users animate (photos, but also 3D renders, anime,
paintings) and refuse what is not a face, and that has to be measured without downloading
anything. Sources: scikit-image's bundled photos (astronaut, cameraman in profile, 100 LFW face
crops), matplotlib's Grace Hopper portrait when matplotlib is installed, stylised renderings of
those (cartoon, posterised, painted, pencil, cel-shaded, clay/3D-like), faces we draw (anime-style
and flat cartoon), photo variants (glasses, sunglasses, beard, hand at the chin, low light,
greyscale, rotated +-30 deg, 48-64 px faces in 1536 px and 2000 x 3000 scenes, a face that fills
the frame) and non-faces (QR codes from segno, landscapes we draw, logos, text, a cat, textures).

Each face sample carries the centre of the face: a detection counts only if its box contains it.
render() runs a sample through a shipped workflow template the way `sonic-runner run` does.
Used by tests/engine/test_face_detection.py and tests/workflows/test_stylised_faces.py (a few
samples) and benchmarks/bench_faces.py (all of them).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

Point = tuple[float, float]


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # the row of the benchmark table: photo, glasses, ..., anime, 3d-like, qr, cat, ...
    stylised: bool
    image: np.ndarray  # uint8 RGB
    face: Point | None  # centre of the face to find; None = not a face (must be refused)


@dataclass(frozen=True)
class _Portrait:
    """A photo and where its face parts are (measured once with dlib's 68 points, checked by eye)."""

    name: str
    image: np.ndarray
    eyes: tuple[Point, Point]
    mouth: Point
    chin: Point
    width: float  # face width in px

    @property
    def centre(self) -> Point:
        return ((self.eyes[0][0] + self.eyes[1][0]) / 2, (self.eyes[0][1] + self.mouth[1]) / 2)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def portraits() -> tuple[_Portrait, ...]:
    found = [_Portrait("astronaut", skdata.astronaut(), ((203, 102), (247, 104)), (223, 146), (221, 178), 88)]
    hopper = _grace_hopper()
    if hopper is not None:
        found.append(_Portrait("hopper", hopper, ((222, 197), (311, 192)), (268, 280), (276, 331), 188))
    return tuple(found)


def _grace_hopper() -> np.ndarray | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        return None
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- stylisations (each maps a photo to a rendering a user might bring) ---------------------------


def cartoon(image: np.ndarray) -> np.ndarray:
    """Flat colour regions with dark edges."""
    flat = cv2.bilateralFilter(image, 9, 75, 75) // 48 * 48 + 24
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 80, 160)
    flat[edges > 0] = 0
    return flat.astype(np.uint8)


def posterise(image: np.ndarray, levels: int = 4) -> np.ndarray:
    step = 256 // levels
    return _u8(image // step * step + step // 2)


def painted(image: np.ndarray) -> np.ndarray:
    """OpenCV's stylization filter: smooth brush-like regions."""
    return cv2.stylization(image, sigma_s=60, sigma_r=0.45)


def pencil(image: np.ndarray) -> np.ndarray:
    grey, _ = cv2.pencilSketch(image, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    return _rgb(grey)


def cel_shaded(image: np.ndarray, colours: int = 6) -> np.ndarray:
    """Anime-like cel shading: a few flat colours (k-means) and thick ink lines."""
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(image, 9, 90, 90), 9, 90, 90)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 10, 1.0)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(pixels, colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    flat = centres.astype(np.uint8)[labels.ravel()].reshape(image.shape)
    grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 5)
    lines = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
    flat[lines == 0] = (30, 20, 20)
    return flat


def clay(image: np.ndarray) -> np.ndarray:
    """3D-render-like: skin smoothed to plastic, relit from the upper left with a specular highlight."""
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(image, 15, 60, 25), 15, 60, 25).astype(np.float32)
    height = cv2.GaussianBlur(cv2.cvtColor(smooth.astype(np.uint8), cv2.COLOR_RGB2GRAY), (0, 0), 4)
    height = height.astype(np.float32) / 255.0
    gy, gx = np.gradient(height * 40.0)
    normal = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    light = np.array([-0.5, -0.6, 0.62], dtype=np.float32)
    light /= np.linalg.norm(light)
    diffuse = np.clip(normal @ light, 0, 1)[..., None]
    half = light + np.array([0, 0, 1], dtype=np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(normal @ half, 0, 1)[..., None] ** 40
    return _u8(smooth * (0.45 + 0.75 * diffuse) + 120 * spec)


def darken(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Low light: gamma 2.2 darkening to ~1/4 of the brightness, sensor noise."""
    dark = 255.0 * (image.astype(np.float32) / 255.0) ** 2.2 * 0.6
    noise = np.random.default_rng(seed).normal(0, 3.0, image.shape)
    return _u8(dark + noise)


def greyscale(image: np.ndarray) -> np.ndarray:
    return _rgb(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def rotate(image: np.ndarray, centre: Point, degrees: float) -> tuple[np.ndarray, Point]:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x, y = centre
    return out, (m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2])


# --- accessories drawn on a portrait ---------------------------------------------------------------


def glasses(p: _Portrait, dark: bool = False) -> np.ndarray:
    out = p.image.copy()
    r = int(p.width * 0.16)
    t = max(2, int(p.width * 0.03))
    (lx, ly), (rx, ry) = ((int(x), int(y)) for x, y in p.eyes)
    for x, y in ((lx, ly), (rx, ry)):
        if dark:
            cv2.ellipse(out, (x, y), (r, int(r * 0.8)), 0, 0, 360, (15, 15, 20), -1, cv2.LINE_AA)
        cv2.ellipse(out, (x, y), (r, int(r * 0.8)), 0, 0, 360, (20, 20, 20), t, cv2.LINE_AA)
    cv2.line(out, (lx + r, ly), (rx - r, ry), (20, 20, 20), t, cv2.LINE_AA)
    cv2.line(out, (lx - r, ly), (lx - int(r * 1.9), ly - 2), (20, 20, 20), t, cv2.LINE_AA)
    cv2.line(out, (rx + r, ry), (rx + int(r * 1.9), ry - 2), (20, 20, 20), t, cv2.LINE_AA)
    return out


def beard(p: _Portrait, seed: int = 0) -> np.ndarray:
    """A dark, hairy beard and moustache over the lower face (textured noise, soft edge)."""
    h, w = p.image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mx, my = p.mouth
    cx, cy = p.chin
    half = p.width * 0.5
    jaw = np.array(
        [
            (mx - half, my - p.width * 0.22),
            (mx - half * 0.9, cy - p.width * 0.05),
            (cx, cy + p.width * 0.12),
            (mx + half * 0.9, cy - p.width * 0.05),
            (mx + half, my - p.width * 0.22),
            (mx + half * 0.35, my - p.width * 0.02),
            (mx - half * 0.35, my - p.width * 0.02),
        ],
        np.int32,
    )
    cv2.fillPoly(mask, [jaw], 1.0)
    cv2.ellipse(
        mask, (int(mx), int(my - p.width * 0.1)), (int(half * 0.45), int(p.width * 0.06)), 0, 0, 360, 1.0, -1
    )
    cv2.ellipse(
        mask, (int(mx), int(my + p.width * 0.02)), (int(half * 0.3), int(p.width * 0.04)), 0, 0, 360, 0.0, -1
    )
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, p.width / 60))[..., None]
    rng = np.random.default_rng(seed)
    hair = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    hair = (45 + 25 * hair)[..., None] * np.array([1.0, 0.8, 0.65], np.float32)
    return _u8(p.image * (1 - mask) + hair * mask)


def hand_at_chin(p: _Portrait) -> np.ndarray:
    """A skin-coloured hand (palm and four fingers) resting against the cheek and chin."""
    out = p.image.copy()
    # Skin colour from the cheek (below the left eye, above the mouth).
    cheek_x, cheek_y = int(p.eyes[0][0]), int((p.eyes[0][1] + 2 * p.mouth[1]) / 3)
    r = max(2, int(p.width * 0.04))
    patch = p.image[cheek_y - r : cheek_y + r, cheek_x - r : cheek_x + r].reshape(-1, 3)
    skin = tuple(int(v) for v in np.median(patch, axis=0))
    s = p.width
    cx, cy = int(p.chin[0] + s * 0.45), int(p.chin[1] + s * 0.1)
    cv2.ellipse(out, (cx, cy), (int(s * 0.22), int(s * 0.3)), -20, 0, 360, skin, -1, cv2.LINE_AA)
    for i in range(4):
        fx = int(cx - s * 0.15 + i * s * 0.09)
        top = (fx - int(s * 0.05), int(cy - s * 0.55 + abs(i - 1.5) * s * 0.05))
        cv2.line(out, (fx, cy - int(s * 0.1)), top, skin, max(3, int(s * 0.08)), cv2.LINE_AA)
        cv2.line(
            out,
            (fx + int(s * 0.04), cy - int(s * 0.1)),
            (top[0] + int(s * 0.04), top[1]),
            (np.array(skin) * 0.75).astype(int).tolist(),
            1,
            cv2.LINE_AA,
        )
    return out


# --- faces and scenes we draw ourselves ------------------------------------------------------------


def drawn_anime_face(
    size: int = 512, skin=(250, 220, 200), hair=(60, 40, 90), iris=(60, 120, 200)
) -> np.ndarray:
    """An anime-style character: big eyes with highlights, small nose and mouth, fringe and side hair."""
    s = size
    img = np.full((s, s, 3), (225, 235, 245), np.uint8)
    cx = s // 2
    cv2.ellipse(img, (cx, int(s * 0.5)), (int(s * 0.34), int(s * 0.4)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    cv2.rectangle(img, (int(s * 0.16), int(s * 0.5)), (int(s * 0.84), int(s * 0.95)), hair, -1)
    face = np.array(
        [
            (0.24, 0.42),
            (0.25, 0.62),
            (0.36, 0.8),
            (0.5, 0.87),
            (0.64, 0.8),
            (0.75, 0.62),
            (0.76, 0.42),
            (0.5, 0.3),
        ]
    )
    cv2.fillPoly(img, [(face * s).astype(np.int32)], skin, cv2.LINE_AA)
    cv2.rectangle(img, (int(s * 0.44), int(s * 0.8)), (int(s * 0.56), s), skin, -1)
    for ex in (0.37, 0.63):
        x, y = int(s * ex), int(s * 0.56)
        cv2.ellipse(img, (x, y), (int(s * 0.075), int(s * 0.09)), 0, 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.ellipse(
            img, (x, y + int(s * 0.01)), (int(s * 0.055), int(s * 0.08)), 0, 0, 360, iris, -1, cv2.LINE_AA
        )
        cv2.ellipse(
            img,
            (x, y + int(s * 0.015)),
            (int(s * 0.028), int(s * 0.045)),
            0,
            0,
            360,
            (20, 20, 40),
            -1,
            cv2.LINE_AA,
        )
        cv2.circle(
            img, (x - int(s * 0.02), y - int(s * 0.025)), int(s * 0.016), (255, 255, 255), -1, cv2.LINE_AA
        )
        cv2.ellipse(
            img,
            (x, y),
            (int(s * 0.08), int(s * 0.095)),
            0,
            200,
            340,
            (30, 20, 30),
            max(2, s // 80),
            cv2.LINE_AA,
        )
        cv2.ellipse(
            img,
            (x, int(s * 0.44)),
            (int(s * 0.06), int(s * 0.02)),
            0,
            190,
            350,
            (60, 40, 50),
            max(2, s // 120),
            cv2.LINE_AA,
        )
    cv2.line(
        img,
        (cx, int(s * 0.66)),
        (cx - int(s * 0.01), int(s * 0.69)),
        (200, 150, 140),
        max(1, s // 200),
        cv2.LINE_AA,
    )
    cv2.ellipse(
        img,
        (cx, int(s * 0.745)),
        (int(s * 0.04), int(s * 0.02)),
        0,
        0,
        180,
        (170, 70, 80),
        max(2, s // 120),
        cv2.LINE_AA,
    )
    for x0 in (0.26, 0.36, 0.46, 0.56, 0.66):
        tri = np.array([(x0, 0.28), (x0 + 0.12, 0.3), (x0 + 0.06, 0.47)]) * s
        cv2.fillPoly(img, [tri.astype(np.int32)], hair, cv2.LINE_AA)
    for ex in (0.33, 0.67):
        cv2.ellipse(
            img,
            (int(s * ex), int(s * 0.67)),
            (int(s * 0.04), int(s * 0.015)),
            0,
            0,
            360,
            (245, 180, 180),
            -1,
            cv2.LINE_AA,
        )
    return img


def landscape(width: int = 1024, height: int = 640, seed: int = 0) -> np.ndarray:
    """Sky, two mountain ridges (random midpoint noise) and a field."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = (np.array([120, 170, 235]) * (1 - y) + np.array([220, 230, 240]) * y) * np.ones((height, width, 3))
    for base, colour, rough in ((0.45, (110, 120, 140), 0.18), (0.6, (70, 100, 70), 0.1)):
        ridge = np.cumsum(rng.normal(0, 1, width)) * rough * height / math.sqrt(width)
        ridge = cv2.GaussianBlur(ridge.reshape(1, -1), (0, 0), 8).ravel() + base * height
        below = np.arange(height)[:, None] > ridge[None, :]
        img[below] = colour
    field = np.arange(height) > 0.78 * height
    img[field] = (90, 140, 60)
    img += rng.normal(0, 4, img.shape)
    return _u8(img)


def qr_code(text: str, scale: int = 10) -> np.ndarray:
    import segno

    qr = segno.make(text, error="m")
    matrix = np.array([list(row) for row in qr.matrix], dtype=np.uint8)
    code = np.pad(1 - matrix, 4, constant_values=1) * 255
    return _rgb(cv2.resize(code, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))


def text_page(width: int = 900, height: int = 600) -> np.ndarray:
    img = np.full((height, width, 3), 250, np.uint8)
    words = "Sonic turns one portrait and a speech clip into a talking head video on any host".split()
    for row in range(14):
        line = " ".join(words[(row * 3) % len(words) :] + words[: (row * 3) % len(words)])[:48]
        cv2.putText(
            img, line, (30, 50 + row * 38), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2, cv2.LINE_AA
        )
    return img


def drawn_logo(size: int = 512) -> np.ndarray:
    img = np.full((size, size, 3), 255, np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), int(size * 0.4), (200, 40, 40), -1, cv2.LINE_AA)
    cv2.circle(img, (c, c), int(size * 0.3), (255, 255, 255), -1, cv2.LINE_AA)
    cv2.putText(
        img,
        "SNC",
        (int(size * 0.22), int(size * 0.58)),
        cv2.FONT_HERSHEY_DUPLEX,
        size / 160,
        (30, 30, 120),
        max(2, size // 60),
        cv2.LINE_AA,
    )
    return img


def paste_small(
    face_img: np.ndarray, centre: Point, face_width: float, target: int, scene: np.ndarray
) -> tuple[np.ndarray, Point]:
    """Shrink `face_img` so its face is `target` px wide and paste it (with some context) into `scene`."""
    scale = target / face_width
    small = cv2.resize(face_img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = scene.shape[:2]
    sh, sw = small.shape[:2]
    out = scene.copy()
    x0, y0 = int(w * 0.6) - sw // 2, int(h * 0.35) - sh // 2
    x0, y0 = max(0, min(w - sw, x0)), max(0, min(h - sh, y0))
    out[y0 : y0 + sh, x0 : x0 + sw] = small
    return out, (x0 + centre[0] * scale, y0 + centre[1] * scale)


def _lfw_faces(count: int) -> list[np.ndarray]:
    """Face crops from LFW (25 x 25 grey), upscaled to a 100 px face on a 200 px grey canvas."""
    crops = skdata.lfw_subset()[:100]
    if count <= 0:
        return []
    step = max(1, len(crops) // count)
    out = []
    for crop in crops[::step][:count]:
        face = cv2.resize(_u8(crop * 255), (100, 100), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((200, 200), int(face[:8].mean()), np.uint8)
        canvas[50:150, 50:150] = face
        out.append(_rgb(canvas))
    return out


# --- the set ---------------------------------------------------------------------------------------

STYLES = {
    "cartoon": cartoon,
    "posterised": posterise,
    "painted": painted,
    "pencil": pencil,
    "cel-anime": cel_shaded,
    "3d-like": clay,
}


def faces(lfw: int = 20) -> list[Sample]:
    """Every face sample: photos and their variants, `lfw` LFW crops, the faces we draw.

    Built once per process (the stylisations and the large scenes take ~9 s) and shared by every
    caller: treat the images as read-only.
    """
    crops = [
        Sample(f"lfw{i:02d}", "photo-lfw", False, img, (100, 100)) for i, img in enumerate(_lfw_faces(lfw))
    ]
    return [*_photo_faces(), *crops, *_drawn_faces()]


@lru_cache(maxsize=1)
def _photo_faces() -> tuple[Sample, ...]:
    out: list[Sample] = []
    for p in portraits():
        c = p.centre
        out.append(Sample(f"{p.name}", "photo", False, p.image, c))
        out.append(Sample(f"{p.name}-grey", "greyscale", False, greyscale(p.image), c))
        out.append(Sample(f"{p.name}-dark", "low-light", False, darken(p.image), c))
        out.append(Sample(f"{p.name}-glasses", "glasses", False, glasses(p), c))
        out.append(Sample(f"{p.name}-sunglasses", "glasses", False, glasses(p, dark=True), c))
        out.append(Sample(f"{p.name}-beard", "beard", False, beard(p), c))
        out.append(Sample(f"{p.name}-hand", "hand", False, hand_at_chin(p), c))
        for deg in (-30, 30):
            img, rc = rotate(p.image, c, deg)
            out.append(Sample(f"{p.name}-rot{deg:+d}", "rotated", False, img, rc))
        for style, fn in STYLES.items():
            out.append(Sample(f"{p.name}-{style}", style, True, fn(p.image), c))
        img, rc = rotate(cartoon(p.image), c, 20)
        out.append(Sample(f"{p.name}-cartoon-rot+20", "cartoon", True, img, rc))
        # A face that fills the frame (~55 % of a 1024 px image).
        x, y = c
        half = p.width * 0.9
        crop = p.image[max(0, int(y - half)) : int(y + half), max(0, int(x - half)) : int(x + half)]
        big = cv2.resize(crop, (1024, 1024), interpolation=cv2.INTER_CUBIC)
        bc = (
            (x - max(0, int(x - half))) * 1024 / crop.shape[1],
            (y - max(0, int(y - half))) * 1024 / crop.shape[0],
        )
        out.append(Sample(f"{p.name}-large", "large", False, big, bc))
        for target, size in ((48, (1536, 1536)), (64, (2000, 3000))):
            scene = landscape(size[0], size[1], seed=target)
            img, sc = paste_small(p.image, c, p.width, target, scene)
            out.append(Sample(f"{p.name}-small{target}", "small", False, img, sc))
        img, sc = paste_small(cel_shaded(p.image), c, p.width, 64, landscape(1536, 1024, seed=3))
        out.append(Sample(f"{p.name}-cel-anime-small64", "small", True, img, sc))
    cam = _rgb(skdata.camera())
    out.append(Sample("cameraman-profile", "photo", False, cam, (219, 160)))
    out.append(Sample("cameraman-profile-painted", "painted", True, painted(cam), (219, 160)))
    return tuple(out)


@lru_cache(maxsize=1)
def _drawn_faces() -> tuple[Sample, ...]:
    out: list[Sample] = []
    palettes = [
        ((250, 220, 200), (60, 40, 90), (60, 120, 200)),
        ((255, 230, 215), (230, 200, 90), (40, 160, 90)),
        ((235, 190, 160), (30, 30, 30), (140, 70, 40)),
    ]
    for i, (skin, hair, iris) in enumerate(palettes):
        img = drawn_anime_face(512, skin, hair, iris)
        out.append(Sample(f"drawn-anime{i}", "drawn-anime", True, img, (256, 325)))
        variants = {
            "3d-like": clay(img),
            "painted": painted(img),
        }
        for style, styled in variants.items():
            out.append(Sample(f"drawn-anime{i}-{style}", style, True, styled, (256, 325)))
        turned, tc = rotate(img, (256, 325), (-20, 20, 30)[i])
        out.append(Sample(f"drawn-anime{i}-rot", "drawn-anime", True, turned, tc))
        scene, sc = paste_small(img, (256, 325), 250, (48, 64, 96)[i], landscape(1536, 1024, seed=10 + i))
        out.append(Sample(f"drawn-anime{i}-small", "small", True, scene, sc))
    return tuple(out)


def non_faces() -> list[Sample]:
    def s(name: str, kind: str, image: np.ndarray) -> Sample:
        return Sample(name, kind, False, _rgb(image), None)

    logo = skdata.logo()
    alpha = logo[..., 3:4].astype(np.float32) / 255.0
    logo_rgb = _u8(logo[..., :3] * alpha + 255 * (1 - alpha))
    rng = np.random.default_rng(0)
    return [
        s("qr-url", "qr", qr_code("https://example.com/sonic/talking-head", 10)),
        s("qr-long", "qr", qr_code("Sonic: portrait + speech -> lip-synced video. " * 4, 6)),
        s("qr-in-photo", "qr", cv2.resize(qr_code("sonic"), (300, 300), interpolation=cv2.INTER_NEAREST)),
        s("landscape0", "landscape", landscape(1024, 640, 0)),
        s("landscape1", "landscape", landscape(1600, 900, 1)),
        s("landscape-large", "landscape", landscape(2000, 3000, 2)),
        s("rocket", "landscape", skdata.rocket()),
        s("motorcycle", "landscape", skdata.stereo_motorcycle()[0]),
        s("skimage-logo", "logo", logo_rgb),
        s("drawn-logo", "logo", drawn_logo()),
        s("skimage-text", "text", skdata.text()),
        s("skimage-page", "text", skdata.page()),
        s("typeset-text", "text", text_page()),
        s("chelsea-cat", "cat", skdata.chelsea()),
        s("chelsea-cat-cartoon", "cat", cartoon(skdata.chelsea())),
        s("coffee", "texture", skdata.coffee()),
        s("coins", "texture", skdata.coins()),
        s("brick", "texture", skdata.brick()),
        s("grass", "texture", skdata.grass()),
        s("gravel", "texture", skdata.gravel()),
        s("horse", "texture", _u8(skdata.horse() * 255)),
        s("hubble", "texture", skdata.hubble_deep_field()),
        s("cells", "texture", skdata.cell()),
        s("chessboard", "texture", skdata.checkerboard()),
        s("noise", "texture", rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)),
        s("flat-grey", "texture", np.full((400, 400, 3), 128, np.uint8)),
    ]


def detection_set(lfw: int = 20) -> list[Sample]:
    return faces(lfw) + non_faces()


def hit(box: tuple[int, int, int, int], sample: Sample) -> bool:
    """Does a detected box contain the sample's face centre?"""
    assert sample.face is not None
    x, y = sample.face
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


# --- a sample through a shipped template, as users run it --------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LITE_FAST = ROOT / "workflows" / "api" / "sonic_lite_fast_api.json"


def speech_clip(path: Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """A short voiced clip (150 Hz with harmonics, three syllables a second) as a 16-bit WAV."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    signal = 0.25 * voiced * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@dataclass(frozen=True)
class Render:
    """What one `sonic-runner run` of a sample gave; `problem` is None when the MP4 is right."""

    sample: Sample
    seconds: float  # wall time of the run: load, Prepare (detection), Animate, Lip Sync, Save MP4
    video: Path | None
    frames: int  # frames decoded from the MP4
    crop_box: tuple[int, int, int, int] | None  # the face crop SONIC_PreData reported
    problem: str | None


_CROP = re.compile(r"face crop \((\d+), (\d+), (\d+), (\d+)\)")


def render(sample: Sample, speech: Path, folder: Path, template: Path = LITE_FAST) -> Render:
    """`sonic-runner run TEMPLATE --image SAMPLE --audio SPEECH -o FOLDER --jsonl`, in this process.

    In-process (the runner's own entry point, cli.main) so the detector loads once for many runs.
    The MP4 is right when the run succeeded and
    - it has a frame per 1/fps s of the speech;
    - the face crop SONIC_PreData reported (its `executed` event) contains the sample's face centre;
    - its first frame is that crop of the image (grey-level correlation >= 0.9; 0.97-1.0 measured);
    - the face is what moves: around the face centre (a square a quarter of the frame wide) the
      frames differ from the first by >= 3x as much as along the frame's border (4.9-71x measured
      on the stylised set: mouth, blinks and head motion against a still background).
    """
    from comfyui_sonic.runner import cli

    assert sample.face is not None, f"{sample.name} is not a face"
    image = folder / f"{sample.name}.png"
    cv2.imwrite(str(image), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
    out_dir = folder / sample.name
    argv = ["run", str(template), "--image", str(image), "--audio", str(speech), "-o", str(out_dir)]
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main([*argv, "--jsonl"])
    except Exception as exc:  # noqa: BLE001 - a crash is this sample's failure, told in one line
        code, stderr = -1, io.StringIO(f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    events = [json.loads(line) for line in stdout.getvalue().splitlines() if line.startswith("{")]
    texts = [t for e in events if e.get("event") == "executed" for t in e["output"].get("text", [])]
    crops = [tuple(int(v) for v in m.groups()) for t in texts if (m := _CROP.search(t))]
    crop = crops[0] if crops else None
    videos = [
        Path(p) for e in events if e.get("event") == "outputs" for p in e["paths"] if p.endswith(".mp4")
    ]
    video = videos[0] if videos else None

    def result(problem: str | None, frames: int = 0) -> Render:
        return Render(sample, seconds, video, frames, crop, problem)

    if code != 0 or video is None:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        return result(lines[-1] if lines else f"exit {code}, no MP4 written")
    frames, fps = video_frames(video)
    with wave.open(str(speech)) as clip:
        expected = round(clip.getnframes() / clip.getframerate() * fps)
    if len(frames) != expected:
        return result(f"{len(frames)} frames in the MP4, expected {expected}", len(frames))
    problem = _crop_problem(sample, crop, frames)
    return result(problem, len(frames))


def _crop_problem(sample: Sample, crop: tuple[int, int, int, int] | None, frames: np.ndarray) -> str | None:
    """Why the video is not the sample's face animated (None when it is); see render()."""
    if crop is None:
        return "Prepare reported no face crop"
    x, y = sample.face
    if not (crop[0] <= x <= crop[2] and crop[1] <= y <= crop[3]):
        return f"the crop {crop} misses the face at ({x:.0f}, {y:.0f})"
    grey = frames.mean(axis=-1)
    h, w = grey.shape[1:]
    source = cv2.cvtColor(sample.image[crop[1] : crop[3], crop[0] : crop[2]], cv2.COLOR_RGB2GRAY)
    small = cv2.resize(source, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    first = cv2.resize(grey[0], (64, 64), interpolation=cv2.INTER_AREA)
    match = float(np.corrcoef(small.ravel(), first.ravel())[0, 1])
    if not match >= 0.9:
        return f"the first frame is not the reported crop {crop} (correlation {match:.2f})"
    change = np.abs(grey[1:] - grey[0]).mean(axis=0)
    fx, fy = (x - crop[0]) * w / (crop[2] - crop[0]), (y - crop[1]) * h / (crop[3] - crop[1])
    r = w // 8
    face = change[max(0, int(fy) - r) : int(fy) + r, max(0, int(fx) - r) : int(fx) + r].mean()
    b = w // 16
    border = np.concatenate(
        [change[:b].ravel(), change[-b:].ravel(), change[:, :b].ravel(), change[:, -b:].ravel()]
    )
    if not face >= 3 * border.mean():
        return f"the face does not move (change {face:.1f} at the face, {border.mean():.1f} at the border)"
    return None


def video_frames(path: Path) -> tuple[np.ndarray, float]:
    """(every frame as float32 RGB [N, H, W, 3], frames per second) of a video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate or 0)
    if not frames:
        return np.zeros((0, 1, 1, 3), np.float32), fps
    return np.stack(frames).astype(np.float32), fps
