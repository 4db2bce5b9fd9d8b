"""The original ox_profile's ``SimpleLauncher``, driving the C sampler thread.

>>> from ox_profile.core import launchers
>>> launcher = launchers.SimpleLauncher()
>>> launcher.start()
>>> launcher.is_paused()
True
>>> launcher.unpause()
>>> launcher.is_alive(), launcher.is_paused()
(True, False)
>>> launcher.cancel()
>>> launcher.is_alive()
False
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Union

from ox_profile import _validate
from ox_profile.core import recording, sampling
from ox_profile.profile import Profile
from ox_profile.profiler import Profiler


class SamplingTracker:
    """The achieved sampling interval, as the original reported it."""

    def __init__(self, launcher: "SimpleLauncher") -> None:
        self._launcher = launcher

    def reset(self) -> None:
        """Start the statistics afresh."""
        self._launcher.profiler._sampler.reset_stats()

    def stats(self) -> Union[str, Dict[str, float]]:
        """``{'mean': seconds, 'stdev': seconds}`` of the interval between
        samples, or ``'No samples taken'``."""
        stats = self._launcher.profiler.stats()
        if stats["ticks"] < 2:
            return "No samples taken"
        return {"mean": stats["mean_interval"], "stdev": stats["stdev_interval"]}


class SimpleLauncher:
    """Starts a sampler thread (native, not a Python thread) that begins
    paused; ``unpause()`` starts sampling, ``pause()`` stops it, ``cancel()``
    ends it for good.  It never keeps the process alive.

    Beyond the original: ``snapshot()`` returns a :class:`~ox_profile.Profile`,
    ``profiler`` is the underlying :class:`~ox_profile.Profiler`, and
    ``mode``, ``backend`` and ``max_memory`` are passed to it.
    """

    def __init__(self, sampler: Optional[sampling.Sampler] = None, stop_flag: Optional[threading.Event] = None,
                 interval: float = .001, *args: Any, mode: str = "wall", backend: Optional[str] = None,
                 max_memory: Optional[int] = None, **kwargs: Any) -> None:
        self.sampler = sampler if sampler else sampling.Sampler(recording.CountingRecorder(max_memory))
        database = getattr(getattr(self.sampler, "my_db", None), "database", None)
        if database is None:
            raise TypeError("SimpleLauncher needs a sampler whose my_db is a recording.CountingRecorder")
        self.interval = _validate.interval(interval)
        self.profiler = Profiler(self.interval, mode=mode, backend=backend, database=database)
        self.tracker = SamplingTracker(self)
        self.stop_flag = stop_flag if stop_flag else threading.Event()
        self.stop_flag.clear()
        self.name = kwargs.get("name") or "ox_profiler_SimpleLauncher_Thread"
        self.daemon = True
        self._started = False
        self._cancelled = False
        self._lock = threading.Lock()
        self._watch_flag = stop_flag is not None

    @classmethod
    def launch(cls, *args: Any, **kwargs: Any) -> "SimpleLauncher":
        """Create, start and unpause a launcher."""
        result = cls(*args, **kwargs)
        result.start()
        result.unpause()
        return result

    def _check_usable(self, what: str) -> None:
        if self._cancelled or self.stop_flag.is_set():
            raise RuntimeError("cannot %s: this launcher was cancelled (create a new SimpleLauncher)" % what)

    def start(self) -> None:
        """Start the sampler thread, paused."""
        with self._lock:
            self._check_usable("start")
            if self._started and self.profiler.is_alive:
                raise RuntimeError("threads can only be started once")
            self.profiler.start_paused()
            self._started = True
        if self._watch_flag:
            threading.Thread(target=self._watch_stop_flag, name="ox_profile stop_flag watcher",
                             daemon=True).start()

    def _watch_stop_flag(self) -> None:
        self.stop_flag.wait()
        self.cancel()

    def run(self) -> None:
        """Not for direct use (as in the original): call ``start()``."""
        raise RuntimeError("call start(), not run(): the sampler is a native thread")

    def pause(self) -> None:
        """Stop taking samples until ``unpause()``."""
        if self._started and not self._cancelled:
            self.profiler.pause()

    def unpause(self) -> None:
        """Take samples (after ``start()``)."""
        self._check_usable("unpause")
        if not self._started:
            raise RuntimeError("call start() before unpause()")
        self.profiler.resume()

    def is_paused(self) -> bool:
        """Whether sampling is paused (true before start and after cancel)."""
        return not self.profiler.is_running

    def is_alive(self) -> bool:
        """Whether the sampler thread is running (paused or not)."""
        return self.profiler.is_alive

    def set_interval(self, new_interval: float) -> None:
        """Sample every ``new_interval`` seconds (0 < interval < 10; at least
        50 µs): ValueError otherwise."""
        self._check_usable("set the interval")
        seconds = _validate.interval(new_interval)
        self.profiler.set_interval(seconds)
        self.interval = seconds
        self.tracker.reset()

    def cancel(self) -> None:
        """Stop the sampler thread for good; what was collected stays readable."""
        with self._lock:
            self._cancelled = True
            self.stop_flag.set()
        self.profiler.stop()

    def show(self, *args: Any, **kwargs: Any) -> str:
        """``self.sampler.show(...)``: the text table."""
        return self.sampler.show(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        """``self.sampler.query(...)``: (records, distinct stacks)."""
        return self.sampler.query(*args, **kwargs)

    def snapshot(self) -> Profile:
        """A :class:`~ox_profile.Profile` of what was collected."""
        return self.profiler.snapshot()

    def isDaemon(self) -> bool:  # noqa: N802 (the threading.Thread spelling)
        """Always true: the sampler never keeps the process alive."""
        return True
