"""The `sonic` backend: the official Sonic model (CVPR 2025) loaded from its own files.

Imports are lazy so that importing the package (as ComfyUI does at start-up)
pulls in neither torch nor diffusers.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "SonicBackend": ".backend",
    "SonicLoadOptions": ".options",
    "load_sonic_backend": ".backend",
    "write_random_checkpoint": ".random_checkpoint",
    "official_unet_key_shapes": ".models",
    "get_config": ".config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(_EXPORTS[name], __name__)
        return getattr(module, name)
    raise AttributeError(name)
