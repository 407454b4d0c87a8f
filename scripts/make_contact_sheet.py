"""Contact sheet of the lite mouth: five kinds of face x closed / half / wide opening.

Renders single frames of the lite backend (no head motion, no blink) for the
photo, greyscale, pale statue, dark-skin and stylised versions of scikit-image's
astronaut and writes one JPEG-compressed PNG grid, so a user sees what `lite`
gives before installing. With --crop the tiles are enlarged crops of the mouth
(for judging it closely).

Run: .venv/bin/python scripts/make_contact_sheet.py [--out docs/lite_mouths.png] [--crop]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "lite_mouths.png")
    parser.add_argument("--crop", action="store_true", help="enlarged mouth crops instead of faces")
    parser.add_argument("--tile", type=int, default=200, help="tile size in pixels")
    args = parser.parse_args()

    from comfyui_sonic.nodes.engine.face import default_analyzer
    from comfyui_sonic.nodes.engine.lite.faces import FACE_KINDS, face_variant
    from skimage import data

    photo = data.astronaut()
    analyzer = default_analyzer()
    landmarks = analyzer.landmarks(photo, analyzer.detect(photo)[0])
    mouth = landmarks[48:68]
    if args.crop:
        cx, cy = mouth.mean(axis=0)
        half = int(0.6 * (mouth[:, 0].max() - mouth[:, 0].min()))
        y0, y1, x0, x1 = int(cy) - half, int(cy) + half, int(cx) - half, int(cx) + half
    else:
        cx, cy = landmarks[:, 0].mean(), landmarks[:, 1].mean()
        half = int(0.75 * (landmarks[:, 0].max() - landmarks[:, 0].min()))
        y0, y1, x0, x1 = int(cy) - half, int(cy) + half, int(cx) - half, int(cx) + half
    t = args.tile
    label_h = 22
    rows = []
    for kind in FACE_KINDS:
        image = face_variant(photo, kind)
        tiles = [
            cv2.resize(
                f[y0:y1, x0:x1], (t, t), interpolation=cv2.INTER_AREA if not args.crop else cv2.INTER_CUBIC
            )
            for f in frames_for(image, landmarks)
        ]
        rows.append(np.hstack(tiles))
    grid = np.vstack([np.hstack([r]) for r in rows])
    # Column titles on top, row titles on the left.
    head = np.full((label_h, grid.shape[1], 3), 255, np.uint8)
    for i, (name, _) in enumerate(OPENINGS):
        cv2.putText(head, name, (i * t + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.vstack([head, grid])
    side = np.full((grid.shape[0], 80, 3), 255, np.uint8)
    for j, kind in enumerate(FACE_KINDS):
        cv2.putText(
            side,
            kind,
            (4, label_h + j * t + t // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    sheet = np.hstack([side, grid])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
