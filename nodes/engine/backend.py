"""What every animation backend provides, and the SONIC_MODEL value the loader node returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .progress import Progress
from .types import GenerationParams, SonicData


class Backend(Protocol):
    name: str

    def generate(self, data: SonicData, params: GenerationParams, progress: Progress) -> Iterator[np.ndarray]:
        """uint8 frame chunks [n, H, W, 3] at params.fps, data.frame_count(params.fps) frames in all.

        Chunks (not one array) so that a long clip never sits whole in memory as float32.
        """
        ...

    def progress_total(self, data: SonicData, params: GenerationParams) -> int:
        """How many progress units generate() will report (steps or frames)."""
        ...


@dataclass
class SonicModel:
    """The SONIC_MODEL value: a backend plus the settings it was loaded with (for display and checks)."""

    backend: Backend
    settings: dict[str, Any] = field(default_factory=dict)
