"""The data that flows between the engine stages (and between our nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive), pixels


@dataclass(frozen=True)
class Audio:
    """Mono or multichannel float32 audio, samples in [-1, 1]."""

    samples: np.ndarray  # [channels, n] float32
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[-1] / float(self.sample_rate)


@dataclass
class SonicData:
    """Everything SONIC_PreData prepares for a backend (the SONIC_DATA type).

    Coordinates: `crop_box` is in the original image; `face_box`, `face_mask`
    and `landmarks` are in the resized crop (`image`).
    """

    image: np.ndarray  # [H, W, 3] uint8, the square-ish crop resized to min_resolution (x64 sides)
    face_box: Box  # detected face in `image` coordinates
    face_mask: np.ndarray  # [H, W] float32 in {0, 1}: face box grown 1.1x (sonic's audio-attention mask)
    crop_box: Box  # crop in `original` coordinates (paste-back)
    original: np.ndarray  # [H0, W0, 3] uint8, the input image as given
    audio_16k: np.ndarray  # [n] float32 mono at 16 kHz, exactly `duration` long
    audio: Audio  # the input audio (original rate/channels) trimmed/padded to `duration`
    duration: float  # seconds
    min_resolution: int
    expand_ratio: float
    landmarks: np.ndarray | None = None  # [68, 2] float32 (dlib 68-point order) in `image` coordinates
    detector: str = "dlib-hog"
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the prepared face image."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def frame_count(self, fps: float) -> int:
        return max(1, round(self.duration * fps))


@dataclass(frozen=True)
class GenerationParams:
    """Per-call settings of SONIC_Inference (never stored on a model object)."""

    seed: int = 0
    inference_steps: int = 25
    dynamic_scale: float = 1.0
    motion_scale: float = 1.0
    fps: float = 25.0
    min_appearance_guidance_scale: float = 2.0
    max_appearance_guidance_scale: float = 2.0
    audio_guidance_scale: float = 7.5
    paste_back: bool = False
