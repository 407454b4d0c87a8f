"""A host's execution_error becomes the HostError that says what to do next, whatever module path
ComfyUI puts in front of the exception's class name."""

from __future__ import annotations

import pytest
from comfyui_sonic.runner.host_errors import (
    ExecutionHostError,
    HostConfigError,
    HostOOMError,
    JobInputError,
    TransientHostError,
    classify_execution_error,
    exception_class_name,
)
from comfyui_sonic.runner.retry import RetryPolicy

# ComfyUI's full_type_name(): module + "." + qualname. A custom node's module is named after its
# folder path, so our errors arrive with that path in front.
PACK = "/tmp/comfy/custom_nodes/ComfyUI-Sonic.nodes.engine.errors"


def ws_error(exception_type: str, message: str = "boom", node_type: str = "SONIC_Inference") -> dict:
    return {
        "type": "execution_error",
        "data": {
            "prompt_id": "p",
            "node_id": "5",
            "node_type": node_type,
            "exception_type": exception_type,
            "exception_message": message,
        },
    }


@pytest.mark.parametrize(
    "exception_type,message,cls,kind",
    [
        (f"{PACK}.SonicInputError", "image: no face found; use a portrait", JobInputError, "input"),
        ("comfyui_sonic.nodes.engine.errors.SonicInputError", "audio: unreadable", JobInputError, "input"),
        (f"{PACK}.NoFaceInFrames", "images: no face found in the frames", JobInputError, "input"),
        (f"{PACK}.SonicModelError", "sonic weights: unet.pth not found", HostConfigError, "host_config"),
        ("SonicModelError", "audio2token.pth does not match", HostConfigError, "host_config"),
        (
            f"{PACK}.SonicOutOfMemoryError",
            "out of memory at min_resolution=768; retry with min_resolution=512",
            HostOOMError,
            "oom",
        ),
        ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.50 GiB", HostOOMError, "oom"),
        ("torch.cuda.OutOfMemoryError", "Allocation failed", HostOOMError, "oom"),
        ("RuntimeError", "CUDA error: out of memory", HostOOMError, "oom"),
        ("<class 'torch.OutOfMemoryError'>", "", HostOOMError, "oom"),
        ("RuntimeError", "Expected all tensors to be on the same device", ExecutionHostError, "execution"),
        # a module path that merely contains a class name is not that class
        (
            "/opt/SonicInputError-tools/custom_nodes/x.errors.ValueError",
            "bad",
            ExecutionHostError,
            "execution",
        ),
    ],
)
def test_classification_uses_the_class_name_after_any_module_path(exception_type, message, cls, kind):
    error = classify_execution_error(ws_error(exception_type, message))
    assert type(error) is cls and error.kind == kind


def test_the_message_names_the_node_and_the_bare_class():
    error = classify_execution_error(
        ws_error(
            f"{PACK}.SonicModelError", "sonic weights: unet.pth not found", node_type="SONIC_ModelLoader"
        )
    )
    assert error.message == (
        "host error in SONIC_ModelLoader (node 5): SonicModelError: sonic weights: unet.pth not found"
    )
    assert error.details["exception_type"] == f"{PACK}.SonicModelError"


def test_the_oom_tiers_are_read_from_our_message_with_a_module_path():
    error = classify_execution_error(
        ws_error(
            f"{PACK}.SonicOutOfMemoryError",
            "out of memory at min_resolution=768; retry with min_resolution=512",
        )
    )
    assert (error.resolution, error.next_tier) == (768, 512)
    decision = RetryPolicy().decide(
        attempts=1, kind=error.kind, retryable=error.retryable, message=error.message, resolution=768
    )
    assert decision.retry and decision.resolution == 512


def test_a_history_status_block_is_classified_like_the_websocket_message():
    status = {
        "status_str": "error",
        "messages": [
            ["execution_start", {"prompt_id": "p"}],
            ["execution_error", ws_error(f"{PACK}.SonicModelError", "weights missing")["data"]],
        ],
    }
    assert isinstance(classify_execution_error(status), HostConfigError)
    interrupted = {"status_str": "error", "messages": [["execution_interrupted", {"prompt_id": "p"}]]}
    error = classify_execution_error(interrupted)
    assert isinstance(error, TransientHostError) and error.kind == "interrupted"


def test_exception_class_name():
    assert exception_class_name(f"{PACK}.SonicModelError") == "SonicModelError"
    assert exception_class_name("<class 'torch.OutOfMemoryError'>") == "OutOfMemoryError"
    assert exception_class_name("") == ""
