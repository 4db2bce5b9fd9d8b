"""Labels: tag samples (the web integrations set the endpoint of each request).

Inside an asyncio task a label belongs to that task: samples taken while the
task runs carry it, and the other tasks sharing the event loop's thread are
not affected.  Elsewhere it belongs to the current thread.  Labels are stored
in the C engine, where the sampler reads them without the GIL.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional, TypeVar

from ox_profile import _engine

F = TypeVar("F", bound=Callable[..., Any])


def _in_task() -> bool:
    """Whether the caller runs inside an asyncio task."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        return False  # no task without asyncio and a loop running in this thread
    return asyncio.current_task() is not None


def set_label(name: Optional[str]) -> None:
    """Label the samples of the current asyncio task, or outside a task of the
    current thread, with ``name`` (None clears it).  Labels are cut to 127
    bytes of UTF-8.  In a task, clear it before the task ends (or use
    :class:`label`): the engine keys it by the task's context."""
    _engine.set_label(name, _in_task())


def get_label() -> Optional[str]:
    """The current task's (else thread's) label, or None."""
    return _engine.get_label(_in_task())


class label:  # noqa: N801 (used like a function: ``with label(...)``)
    """``with ox_profile.label("nightly-import"): ...`` labels the samples taken
    inside the block: of the current asyncio task when there is one (other
    tasks of the event loop keep theirs), else of the current thread.  The
    previous label comes back after.  Also usable as a decorator, of plain
    and of async functions."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("label must be a non-empty string, not %r" % (name,))
        self.name = name
        self._previous: list = []

    def __enter__(self) -> "label":
        task = _in_task()
        self._previous.append((task, _engine.get_label(task)))
        _engine.set_label(self.name, task)
        return self

    def __exit__(self, *exc: object) -> None:
        task, previous = self._previous.pop()
        _engine.set_label(previous, task)

    def __call__(self, func: F) -> F:
        import inspect

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with label(self.name):
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with label(self.name):
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
