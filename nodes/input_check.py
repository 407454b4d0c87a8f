"""Widget values checked against a node's own INPUT_TYPES (type, min/max, combo choices, finiteness).

Shared by the nodes and by the runner's embedded executor so both apply one rule. ComfyUI checks
a typed-in widget against min/max and the combo list, but lets NaN through (NaN < min is False) and
never checks a value that arrives over a link; a NaN motion_scale then ends deep in numpy as a
LinAlgError, and fps=1000 renders for a minute before the encoder refuses it. Here a bad number is
a one-line SonicInputError naming the input, the value and the allowed range, before any work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .engine.errors import SonicInputError

NUMBER_TYPES = ("INT", "FLOAT")


def _range_text(spec: Mapping[str, Any], kind: str = "a number") -> str:
    lo, hi = spec.get("min"), spec.get("max")
    if lo is not None and hi is not None:
        return f"give a value from {lo:g} to {hi:g}"
    if lo is not None:
        return f"give a value of at least {lo:g}"
    if hi is not None:
        return f"give a value of at most {hi:g}"
    return f"give {kind}"


def check_value(name: str, value: Any, input_type: Any, spec: Mapping[str, Any] | None = None) -> Any:
    """The value converted the way ComfyUI converts it (INT -> int, FLOAT -> float, ...), or SonicInputError.

    `input_type` is the first item of the INPUT_TYPES entry (a type name, or the list of choices of
    a combo); `spec` its options dict (min, max). Types that are not widgets (IMAGE, AUDIO, ...) are
    returned unchanged: only a link can carry them, and the node checks their content.
    """
    spec = spec or {}
    if isinstance(input_type, (list, tuple)):
        if value not in input_type:
            shown = ", ".join(map(str, input_type[:12])) + (", ..." if len(input_type) > 12 else "")
            raise SonicInputError(name, f"{value!r} is not one of the choices", f"use one of: {shown}")
        return value
    if input_type == "INT":
        number = _integer(name, value, _range_text(spec, "an integer"))
    elif input_type == "FLOAT":
        number = _float(name, value, _range_text(spec, "a decimal number"))
    elif input_type == "BOOLEAN":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise SonicInputError(name, f"{value!r} is not a boolean", "use true or false")
    elif input_type == "STRING":
        if isinstance(value, (dict, list, tuple)):
            raise SonicInputError(name, f"expected text, got a {type(value).__name__}", "give a string")
        return str(value)
    else:
        return value
    lo, hi = spec.get("min"), spec.get("max")
    if lo is not None and number < lo:
        raise SonicInputError(name, f"{number!r} is below the minimum of {lo:g}", _range_text(spec))
    if hi is not None and number > hi:
        raise SonicInputError(name, f"{number!r} is above the maximum of {hi:g}", _range_text(spec))
    return number


def _integer(name: str, value: Any, fix: str) -> int:
    if isinstance(value, bool):
        raise SonicInputError(name, f"{value!r} is not a whole number", fix)
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SonicInputError(name, f"{value!r} is not a whole number", fix) from None
    if not number.is_integer():  # also NaN and inf
        raise SonicInputError(name, f"{value!r} is not a whole number", fix)
    return int(number)


def _float(name: str, value: Any, fix: str) -> float:
    if isinstance(value, bool):
        raise SonicInputError(name, f"{value!r} is not a number", fix)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SonicInputError(name, f"{value!r} is not a number", fix) from None
    if not math.isfinite(number):
        raise SonicInputError(name, f"{value!r} is not a finite number", fix)
    return number


def declared_inputs(cls: type) -> dict[str, tuple]:
    """{input name: (type, options)} of a node class, required and optional together."""
    spec = cls.INPUT_TYPES()
    declared = {**spec.get("required", {}), **spec.get("optional", {})}
    return {name: (entry[0], entry[1] if len(entry) > 1 else {}) for name, entry in declared.items()}


def check_numbers(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The node's INT/FLOAT inputs among `values`, checked (finite, within min/max) and converted.

    Called first thing in a node's function, so linked values (which ComfyUI never validates)
    and NaN (which it lets through) get the same one-line error as a typed-in value.
    """
    declared = declared_inputs(cls)
    checked = {}
    for name, value in values.items():
        input_type, spec = declared.get(name, (None, {}))
        if input_type in NUMBER_TYPES:
            checked[name] = check_value(name, value, input_type, spec)
    return checked
