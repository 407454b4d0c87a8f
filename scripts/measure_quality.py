"""Print the quality measures of a talking-head clip against the portrait it was made from.

    python scripts/measure_quality.py output/clip.mp4 portrait.jpg [--max-offset 0.5] [--json]

Works for any MP4 with an audio track (lite, sonic, or someone else's): A/V
offset, mouth/audio correlation, identity SSIM of the face outside the mouth,
and frame-to-frame flicker (see nodes/engine/quality.py for definitions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _engine():
    try:
        from comfyui_sonic.nodes.engine import image_input, quality
        from comfyui_sonic.nodes.engine.errors import SonicInputError
    except ImportError:
        sys.exit("error: the pack is not installed; run `pip install -e .[nodes]` (or `make setup`) first")
    return image_input, quality, SonicInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, help="the clip (MP4 with audio)")
    parser.add_argument("reference", type=Path, help="the portrait the clip was made from")
    parser.add_argument(
        "--max-offset", type=float, default=0.5, help="A/V offset search range, seconds (0.5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)
    image_input, quality, SonicInputError = _engine()
    try:
        reference = image_input.load_image(args.reference, "reference")
        report = quality.measure_video(args.video, reference, max_offset=args.max_offset)
    except SonicInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"{args.video}")
        for line in report.lines():
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
