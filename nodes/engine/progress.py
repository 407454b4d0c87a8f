"""Progress reporting the engine can use without knowing who is watching."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What long-running engine work reports to: a ComfyUI bar, a CLI bar, or nothing."""

    total: int

    def update(self, n: int = 1) -> None: ...

    def check_cancel(self) -> None:
        """Raise if the user asked to stop; called between steps."""
        ...


class NullProgress:
    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n

    def check_cancel(self) -> None:
        return None
