"""Labels: tag the samples of the current thread (Flask sets the endpoint).

The label is stored in the C engine, where the sampler reads it without the
GIL; it is per thread, not per asyncio task.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

from ox_profile import _engine

F = TypeVar("F", bound=Callable[..., Any])


def set_label(name: Optional[str]) -> None:
    """Label this thread's samples with ``name`` (None clears it).  Labels are
    cut to 127 bytes of UTF-8."""
    _engine.set_label(name)


def get_label() -> Optional[str]:
    """This thread's current label, or None."""
    return _engine.get_label()


class label:  # noqa: N801 (used like a function: ``with label(...)``)
    """``with ox_profile.label("nightly-import"): ...`` labels the samples taken
    of this thread inside the block; the previous label comes back after.
    Also usable as a decorator."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("label must be a non-empty string, not %r" % (name,))
        self.name = name
        self._previous: list = []

    def __enter__(self) -> "label":
        self._previous.append(_engine.get_label())
        _engine.set_label(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        _engine.set_label(self._previous.pop())

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
