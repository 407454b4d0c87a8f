"""Writes the template browser's thumbnails, workflows/<template>.jpg, one distinct card per template.

ComfyUI's template browser shows a custom-node pack's templates by file name only (its frontend
builds each card as {name, description: name, mediaSubtype: "jpg"} and fetches
/api/workflow_templates/<pack>/<name>.jpg), so the thumbnail is where a user can read which
template to pick: each card is a frame the lite backend renders from the template's own inputs
(demo face + speech, the template's min_resolution), with its backend, tier, what it needs and
roughly how long it takes written on it.

The sonic cards use a lite-rendered frame too (no weights are needed to build them), labelled
"sonic (GPU)".

    python scripts/make_thumbnails.py
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZE = (480, 360)
MAX_BYTES = 60_000
TIER_COLORS = {"fast": (46, 160, 67), "balanced": (33, 118, 199), "hq": (170, 60, 180)}
BACKEND_NOTES = {
    "lite": ["lite (CPU)", "no model files needed"],
    "sonic": ["sonic (GPU)", "needs Sonic + SVD weights"],
}


def _font(size: int):
    from PIL import ImageFont

    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "DejaVuSans-Bold.ttf",
    ):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def render_frame(min_resolution: int, seed: int = 0) -> np.ndarray:
    """One mid-clip frame the lite backend renders from the demo face and speech, via the nodes."""
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # noqa: F401  (makes the pack importable as comfyui_sonic from a checkout)
    from comfyui_sonic.nodes.inference import SONIC_Inference
    from comfyui_sonic.nodes.model_loader import SONIC_ModelLoader
    from comfyui_sonic.nodes.pre_data import SONIC_PreData

    face = np.asarray(Image.open(ROOT / "demo" / "sonic_example_face.jpg").convert("RGB"))
    with wave.open(str(ROOT / "demo" / "sonic_example_speech.wav")) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    image = torch.from_numpy(face).float().div(255).unsqueeze(0)
    audio = {"waveform": torch.from_numpy(pcm).reshape(1, 1, -1), "sample_rate": rate}
    (data,) = SONIC_PreData().prepare(
        image=image,
        audio=audio,
        duration=1.6,
        min_resolution=min_resolution,
        expand_ratio=0.5,
        on_mismatch="pad_or_trim",
    )["result"]
    (model,) = SONIC_ModelLoader().load(backend="lite")["result"]
    frames, _, _ = SONIC_Inference().generate(
        model=model, data=data, seed=seed, inference_steps=20, dynamic_scale=1.0, motion_scale=1.0, fps=25.0
    )
    return (frames[len(frames) * 2 // 3].numpy() * 255).round().clip(0, 255).astype(np.uint8)


def card(frame: np.ndarray, backend: str, tier: str, resolution: int, timing: str, source: str = "audio"):
    """The frame, cropped to the card, with a legible band: backend, tier, needs, time per 10 s.

    A text template's card also says "TEXT -> SPEECH" beside its tier badge."""
    from PIL import Image, ImageDraw, ImageOps

    img = ImageOps.fit(Image.fromarray(frame), SIZE, centering=(0.5, 0.4))
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle([0, SIZE[1] - 118, SIZE[0], SIZE[1]], fill=(0, 0, 0, 190))
    label, needs = BACKEND_NOTES[backend]
    badge = _font(26)
    width = int(draw.textlength(tier.upper(), font=badge))
    draw.rounded_rectangle([12, 12, 36 + width, 52], radius=8, fill=(*TIER_COLORS[tier], 235))
    draw.text((24, 17), tier.upper(), font=badge, fill="white")
    if source == "text":
        left = 48 + width
        label_width = int(draw.textlength("TEXT -> SPEECH", font=badge))
        draw.rounded_rectangle([left, 12, left + 24 + label_width, 52], radius=8, fill=(200, 120, 20, 235))
        draw.text((left + 12, 17), "TEXT -> SPEECH", font=badge, fill="white")
    draw.text((16, SIZE[1] - 112), label, font=_font(34), fill="white")
    draw.text((16, SIZE[1] - 68), f"{needs} · {resolution} px", font=_font(19), fill=(230, 230, 230))
    draw.text((16, SIZE[1] - 40), timing, font=_font(19), fill=(230, 230, 230))
    return img


def save_small(img, path: Path) -> int:
    """JPEG at the best quality that stays under MAX_BYTES (the browser loads all cards at once)."""
    for quality in (85, 78, 70, 60, 50):
        img.save(path, "JPEG", quality=quality, optimize=True, progressive=True)
        if path.stat().st_size < MAX_BYTES:
            break
    return path.stat().st_size


SHORT_TIMING = {
    "lite": {
        "fast": "~2 s per 10 s audio (CPU)",
        "balanced": "~2 s per 10 s audio (CPU)",
        "hq": "~3-4 s per 10 s (CPU)",
    },
    "sonic": {
        "fast": "minutes per 10 s audio (GPU)",
        "balanced": "minutes per 10 s audio (GPU)",
        "hq": "several min per 10 s (GPU)",
    },
}


def main() -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_workflows

    frames: dict[int, np.ndarray] = {}
    for source in make_workflows.SOURCES:
        for backend in make_workflows.BACKENDS:
            for tier in make_workflows.TIERS:
                resolution = make_workflows.TIERS[tier]["Prepare"]["min_resolution"]
                if resolution not in frames:
                    frames[resolution] = render_frame(resolution)
                timing = SHORT_TIMING[backend][tier]
                img = card(frames[resolution], backend, tier, resolution, timing, source)
                name = make_workflows.template_name(backend, tier, source)
                path = ROOT / "workflows" / f"{name}.jpg"
                print(f"{path.relative_to(ROOT)}: {save_small(img, path)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
