"""Measurements of one stack, as the original ox_profile named them.

Only custom recorders (objects with a ``record(measurement)`` method) see
these; the built-in CountingRecorder records in the C engine instead.
"""

from __future__ import annotations

from types import FrameType
from typing import List


def frame_name(frame: FrameType) -> str:
    """``function(module)`` for one frame."""
    return "%s(%s)" % (frame.f_code.co_name, frame.f_globals.get("__name__"))


class Measurement:
    """A stack, named by its frames root first: ``a(m);b(m);c(m)``."""

    def __init__(self, frame: FrameType) -> None:
        self.name = self.snap(frame)

    def get_path(self) -> List[str]:
        """The frame names, root first."""
        return self.name.split(";")

    @staticmethod
    def snap(frame: FrameType) -> str:
        """The name of the stack that ends at ``frame``."""
        names = []
        current = frame
        while current is not None:
            names.append(frame_name(current))
            current = current.f_back
        return ";".join(reversed(names))
