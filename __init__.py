"""ComfyUI entry point for the Sonic talking-head node pack.

ComfyUI imports this file when it loads custom nodes and reads
NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS and WEB_DIRECTORY from it.
Nothing here may import torch or a model library: node modules defer those
imports to execution, so loading the pack stays cheap and a broken GPU stack
cannot stop ComfyUI from starting.

The node registry itself is loaded on first access (PEP 562 module
__getattr__): the pip-installed runner lives in this package too
(`comfyui_sonic.runner`), and `sonic-runner --help` must not pay for
importing the nodes.
"""

from __future__ import annotations

from typing import Any

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def __getattr__(name: str) -> Any:
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from . import nodes
        from .nodes.comfy_bridge import install_example_inputs, register_model_folder

        register_model_folder()
        install_example_inputs()
        globals().update(
            NODE_CLASS_MAPPINGS=nodes.NODE_CLASS_MAPPINGS,
            NODE_DISPLAY_NAME_MAPPINGS=nodes.NODE_DISPLAY_NAME_MAPPINGS,
        )
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
