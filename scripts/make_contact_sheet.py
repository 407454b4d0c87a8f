"""Contact sheet of the lite mouth: kinds of face x closed / half / wide opening, face and mouth.

Renders single frames of the lite backend (no head motion, no blink) for the photo,
greyscale, pale statue, dark-skin and stylised versions of scikit-image's astronaut
(the bundled demo face), and the same photo with its lips shut (so the lite mouth
has to draw the teeth), and writes one PNG grid: per row the face at normal viewing
size, then the mouth enlarged, each at closed / half / wide. A user sees what `lite`
gives before installing. `--extra IMAGE` adds a row per portrait of your own.

Run: .venv/bin/python scripts/make_contact_sheet.py [--out docs/lite_mouths.png] [--extra IMAGE ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OPENINGS = (("closed", 0.0), ("half", 0.5), ("wide", 1.0))


def frames_for(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
    from comfyui_sonic.nodes.engine.lite.backend import mouth_frame

    return [mouth_frame(image, landmarks, opening) for _, opening in OPENINGS]


def tiles(image: np.ndarray, landmarks: np.ndarray, size: int) -> list[np.ndarray]:
    """Face tiles then mouth tiles, closed / half / wide."""
    frames = frames_for(image, landmarks)
    cx, cy = landmarks[:, 0].mean(), landmarks[:, 1].mean()
    half = int(0.75 * (landmarks[:, 0].max() - landmarks[:, 0].min()))
    face = (int(cy) - half, int(cy) + half, int(cx) - half, int(cx) + half)
    mouth = landmarks[48:68]
    mx, my = mouth.mean(axis=0)
    mh = int(0.75 * (mouth[:, 0].max() - mouth[:, 0].min()))
    my += 0.25 * mh  # the jaw opens downwards
    crop = (int(my) - mh, int(my) + mh, int(mx) - mh, int(mx) + mh)
    out = []
    for (y0, y1, x0, x1), interpolation in ((face, cv2.INTER_AREA), (crop, cv2.INTER_CUBIC)):
        for f in frames:
            padded = cv2.copyMakeBorder(f, size, size, size, size, cv2.BORDER_REPLICATE)
            region = padded[y0 + size : y1 + size, x0 + size : x1 + size]
            out.append(cv2.resize(region, (size, size), interpolation=interpolation))
    return out


def portrait(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A portrait prepared as the lite backend sees it (512 px face crop) and its landmarks."""
    from comfyui_sonic.nodes.engine.image_input import load_image
    from comfyui_sonic.nodes.engine.prepare import prepare
    from comfyui_sonic.nodes.engine.types import Audio

    silence = Audio(samples=np.zeros((1, 16000), np.float32), sample_rate=16000)
    data = prepare(load_image(path), silence, min_resolution=512)
    return np.ascontiguousarray(data.image), np.asarray(data.landmarks, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "lite_mouths.png")
    parser.add_argument("--extra", type=Path, action="append", default=[], help="another portrait (a row)")
    parser.add_argument("--tile", type=int, default=160, help="tile size in pixels")
    args = parser.parse_args()

    from comfyui_sonic.nodes.engine.face import default_analyzer
    from comfyui_sonic.nodes.engine.lite.backend import mouth_frame
    from comfyui_sonic.nodes.engine.lite.faces import FACE_KINDS, face_variant

    photo, landmarks = portrait(REPO / "demo" / "sonic_example_face.jpg")
    rows: list[tuple[str, np.ndarray, np.ndarray]] = [
        (k, face_variant(photo, k), landmarks) for k in FACE_KINDS
    ]
    shut = mouth_frame(photo, landmarks, 0.0)
    analyzer = default_analyzer()
    rows.append(("lips shut", shut, analyzer.landmarks(shut, analyzer.detect(shut)[0])))
    for path in args.extra:
        rows.append((path.stem[:10], *portrait(path)))
    t, label_h, side_w = args.tile, 22, 84
    grid = np.vstack([np.hstack(tiles(image, points, t)) for _, image, points in rows])
    head = np.full((label_h, grid.shape[1], 3), 255, np.uint8)
    for i, (name, _) in enumerate(OPENINGS * 2):
        title = name if i < 3 else f"{name} (mouth)"
        cv2.putText(head, title, (i * t + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.vstack([head, grid])
    side = np.full((grid.shape[0], side_w, 3), 255, np.uint8)
    for j, (name, _, _) in enumerate(rows):
        y = label_h + j * t + t // 2
        cv2.putText(side, name, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.hstack([side, grid])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
