"""Errors a user can act on.

Each message is one line that names the input and says what to do. The
runner recognises these class names in a host's `execution_error` to decide
whether a job may be retried: an input error never is, an out-of-memory error
is retried at a lower resolution tier.
"""

from __future__ import annotations

# ComfyUI reports an error's type as `module.QualName`; a custom node's module is named after its
# folder path ("/x/custom_nodes/ComfyUI-Sonic.nodes.engine.errors"), which the error dialog and a
# remote runner show verbatim. A short module name keeps it readable ("sonic.SonicModelError");
# the runner matches the last class name, so both spellings classify alike.
SHORT_MODULE = "sonic"


class SonicInputError(ValueError):
    """Bad user input (no face, unreadable audio, value out of range): never retried."""

    def __init__(self, input_name: str, problem: str, fix: str) -> None:
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        super().__init__(f"{input_name}: {problem}; {fix}")


class SonicModelError(RuntimeError):
    """A model file is missing or does not match the architecture (names the file/key)."""


class SonicServiceError(RuntimeError):
    """A service the node depends on failed (a TTS server down, answering HTML, silence or nothing).

    Not the user's input and not this host's files: the runner retries it with backoff, since
    services come back.
    """


class SonicOutOfMemoryError(RuntimeError):
    """The device ran out of memory; names the resolution tried and the next lower tier."""

    def __init__(self, resolution: int, next_tier: int | None, detail: str = "") -> None:
        self.resolution = resolution
        self.next_tier = next_tier
        hint = (
            f"retry with min_resolution={next_tier}"
            if next_tier
            else "no lower resolution tier is left; free GPU memory or use the lite backend"
        )
        extra = f" ({detail})" if detail else ""
        super().__init__(f"out of memory at min_resolution={resolution}{extra}; {hint}")


RESOLUTION_TIERS = (384, 512, 768, 1024)


def next_lower_tier(resolution: int) -> int | None:
    lower = [t for t in RESOLUTION_TIERS if t < resolution]
    return lower[-1] if lower else None


for _cls in (SonicInputError, SonicModelError, SonicServiceError, SonicOutOfMemoryError):
    _cls.__module__ = SHORT_MODULE
