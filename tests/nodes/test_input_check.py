"""Widget values checked against a node's INPUT_TYPES: the one rule the nodes and the embedded runner share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicInputError
from comfyui_sonic.nodes.inference import SONIC_Inference
from comfyui_sonic.nodes.input_check import check_numbers, check_value

SCALE = {"default": 1.0, "min": 0.0, "max": 2.0}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan"])
def test_nan_and_infinity_are_refused_where_comfyui_lets_them_through(bad):
    # ComfyUI compares nan < min and nan > max, both False, so NaN passes its validation.
    with pytest.raises(SonicInputError) as excinfo:
        check_value("dynamic_scale", bad, "FLOAT", SCALE)
    message = str(excinfo.value)
    assert message.startswith("dynamic_scale: ") and "not a finite number" in message
    assert message.endswith("give a value from 0 to 2") and "\n" not in message


def test_out_of_range_numbers_name_the_limit_and_the_range():
    with pytest.raises(
        SonicInputError, match=r"^fps: 1000\.0 is above the maximum of 60; give a value from 1 to 60$"
    ):
        check_value("fps", 1000, "FLOAT", {"min": 1.0, "max": 60.0})
    with pytest.raises(
        SonicInputError, match=r"^crf: -1 is below the minimum of 0; give a value from 0 to 51$"
    ):
        check_value("crf", -1, "INT", {"min": 0, "max": 51})


def test_values_are_converted_as_comfyui_converts_them():
    assert check_value("fps", 25, "FLOAT", {}) == 25.0 and isinstance(
        check_value("fps", 25, "FLOAT", {}), float
    )
    assert check_value("crf", 19.0, "INT", {}) == 19 and isinstance(
        check_value("crf", np.int64(19), "INT", {}), int
    )
    assert check_value("paste_back", 1, "BOOLEAN", {}) is True
    assert check_value("backend", "lite", ["lite", "sonic"], {}) == "lite"
    images = object()
    assert check_value("images", images, "IMAGE", {}) is images  # not a widget: the node checks it


@pytest.mark.parametrize(
    ("value", "input_type", "says"),
    [
        (2.5, "INT", "2.5 is not a whole number"),
        (True, "INT", "True is not a whole number"),
        ("fast", "FLOAT", "'fast' is not a number"),
        ("yes", "BOOLEAN", "is not a boolean"),
        ("vp9", ["h264", "h265"], "'vp9' is not one of the choices; use one of: h264, h265"),
        ({"a": 1}, "STRING", "expected text"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_one_line_error(value, input_type, says):
    with pytest.raises(SonicInputError, match="^x: ") as excinfo:
        check_value("x", value, input_type, {})
    assert says in str(excinfo.value)


def test_check_numbers_reads_the_node_schema_and_leaves_other_inputs_alone():
    checked = check_numbers(SONIC_Inference, {"seed": 7.0, "fps": 25, "paste_back": True, "model": None})
    assert checked == {"seed": 7, "fps": 25.0}
    with pytest.raises(SonicInputError, match="^inference_steps: 0 is below the minimum of 1"):
        check_numbers(SONIC_Inference, {"inference_steps": 0})
