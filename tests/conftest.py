"""Shared test set-up: the pack is importable as `comfyui_sonic` (as ComfyUI would load it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ensure_pack_importable() -> None:
    """Load the repo root as package `comfyui_sonic` when it is not pip-installed.

    This mirrors how ComfyUI imports a custom-node folder: a package from its
    __init__.py with the folder as its search location.
    """
    if importlib.util.find_spec("comfyui_sonic") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        "comfyui_sonic", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_sonic"] = module
    spec.loader.exec_module(module)


_ensure_pack_importable()
