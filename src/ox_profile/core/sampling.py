"""The original ox_profile's ``Sampler``: one synchronous sample of every
thread, taken when ``run()`` (or the sampler itself) is called."""

from __future__ import annotations

import sys
from typing import Any, Optional

from ox_profile.core import metrics


class Freezer:
    """Kept for compatibility: the C capture needs no switch-interval games."""

    def __enter__(self) -> "Freezer":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class Sampler:
    """Takes a sample of every thread's stack each time it is run.

    >>> from ox_profile.core import sampling, recording
    >>> sampler = sampling.Sampler(recording.CountingRecorder())
    >>> def foo():
    ...     sampler.run()
    ...     return 'done'
    ...
    >>> foo()
    'done'
    >>> [r.name for r in sampler.my_db.query(re_filter='foo')[0]]
    ['foo(ox_profile.core.sampling)']
    """

    def __init__(self, my_db: Any, freezer: Optional[Freezer] = None) -> None:
        self.my_db = my_db
        self.freezer = freezer or Freezer()

    def show(self, *args: Any, **kwargs: Any) -> str:
        """``self.my_db.show(...)``."""
        return self.my_db.show(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        """``self.my_db.query(...)``."""
        return self.my_db.query(*args, **kwargs)

    def get_measure_tool(self) -> Any:
        """What custom recorders receive: :class:`metrics.Measurement`."""
        return metrics.Measurement

    def run(self) -> None:
        """Record the stacks of all threads at this moment (this one included)."""
        capture = getattr(self.my_db, "capture_now", None)
        if capture is not None:
            capture(True)
            return
        # A custom recorder of the original API: give it measurements.
        measure = self.get_measure_tool()
        with self.freezer:
            for frame in list(sys._current_frames().values()):  # pylint: disable=protected-access
                self.my_db.record(measure(frame))

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return self.run()
