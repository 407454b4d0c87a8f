"""Small inputs for the preprocessing and encoding tests: audio clips, odd image files, fake detectors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.types import Audio


def tone(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> Audio:
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return Audio(samples=np.repeat(wave[None], channels, axis=0), sample_rate=rate)


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height but holds no pixel data: size checks must not decode it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


class FakeAnalyzer:
    """A face analyzer with fixed answers (face selection and argument-order tests)."""

    name = "fake"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        self.boxes = boxes
        self.detect_calls = 0

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        self.detect_calls += 1
        return list(self.boxes)

    def landmarks(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        return np.tile(np.array([[(x0 + x1) / 2, (y0 + y1) / 2]], np.float32), (68, 1))


@pytest.fixture
def make_tone():
    """tone(seconds, rate=16000, channels=1, freq=440.0) -> Audio."""
    return tone


@pytest.fixture
def make_header_only_png():
    """header_only_png(path, width, height) -> path."""
    return header_only_png


@pytest.fixture
def fake_analyzer():
    """FakeAnalyzer(boxes): detect() returns `boxes`, counting calls."""
    return FakeAnalyzer
