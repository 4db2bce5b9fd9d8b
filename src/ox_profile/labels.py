"""Labels: tag the samples of the current thread (Flask sets the endpoint).

The label is stored in the C engine, where the sampler reads it without the
GIL; it is per thread, not per asyncio task.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from ox_profile import _engine


def set_label(name: Optional[str]) -> None:
    """Label this thread's samples with ``name`` (None clears it).  Labels are
    cut to 127 bytes of UTF-8."""
    _engine.set_label(name)


def get_label() -> Optional[str]:
    """This thread's current label, or None."""
    return _engine.get_label()


@contextlib.contextmanager
def label(name: str) -> Iterator[None]:
    """``with ox_profile.label("nightly-import"): ...`` labels the samples taken
    of this thread inside the block; the previous label comes back after."""
    if not isinstance(name, str) or not name:
        raise ValueError("label must be a non-empty string, not %r" % (name,))
    previous = _engine.get_label()
    _engine.set_label(name)
    try:
        yield
    finally:
        _engine.set_label(previous)
