"""ComfyUI entry point for the Sonic talking-head node pack.

ComfyUI imports this file when it loads custom nodes. Nothing here may import
torch or a model library: the node modules defer those imports to execution,
so loading the pack stays cheap and a broken GPU stack cannot stop ComfyUI
from starting.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.comfy_bridge import register_model_folder

WEB_DIRECTORY = "./web"

register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
