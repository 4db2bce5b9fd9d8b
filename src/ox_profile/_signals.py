"""Signals during ``ox-profile run``: the profile is written whatever arrives.

* While the program runs, a signal whose default action would end the process
  (SIGTERM, SIGHUP, SIGQUIT, SIGUSR1...; only those still at their default)
  raises :class:`ProgramEnd` (a ``SystemExit`` with status 128 + signal) in
  the main thread, as Ctrl-C raises ``KeyboardInterrupt``: the program's
  ``finally`` blocks run, then the profile is written.
* Once the program is over (:meth:`Signals.ending`), those signals and Ctrl-C
  are remembered instead (:attr:`Signals.late`), except inside
  :meth:`Signals.interruptible`, where they raise :class:`Interrupted`: output
  that may block (a FIFO nobody reads, a stalled pipe) is abandoned for the
  fallback file rather than waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import weakref
from typing import Any, Callable, Dict, Iterator, Optional, Union

__all__ = ["ENDING", "ProgramEnd", "Interrupted", "Signals", "signal_name"]

#: Signals whose default action ends the process and that Python lets us catch.
ENDING = tuple(getattr(signal, name) for name in (
    "SIGHUP", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF",
    "SIGXCPU", "SIGPWR") if hasattr(signal, name))

_Handler = Union[Callable[[int, Any], Any], int, None]


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


class ProgramEnd(SystemExit):
    """A signal ended the program: ``SystemExit(128 + signum)``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class Interrupted(Exception):
    """A signal arrived while writing output that may block."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted by %s" % signal_name(signum))
        self.signum = signum


class Signals:
    """The handlers of one ``ox-profile run`` (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self._previous: Dict[int, _Handler] = {}
        self._ending = False
        self._interruptible = 0
        #: The first signal received after the program ended, if any.
        self.late: Optional[int] = None

    def _handle(self, signum: int, frame: Any) -> None:
        if not self._ending:
            raise ProgramEnd(signum)
        if self.late is None:
            self.late = signum
        if self._interruptible:
            raise Interrupted(signum)

    def _take(self, signum: int, default: _Handler) -> None:
        try:
            if signal.getsignal(signum) is default and signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._handle)
        except (ValueError, OSError):  # not the main thread, or not catchable here
            pass

    def catch(self) -> "Signals":
        """Take over the ending signals still at their default action (in
        this process only: a child it forks gets the program's handlers back)."""
        for signum in ENDING:
            self._take(signum, signal.SIG_DFL)
        _active.add(self)
        return self

    def ending(self) -> None:
        """The program is over: remember signals, Ctrl-C included, from now on."""
        self._ending = True
        self._take(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Signals arriving inside the block raise :class:`Interrupted`."""
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    def restore(self) -> None:
        """Put the handlers back as they were."""
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous)
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()
        _active.discard(self)


# The Signals that have taken over handlers in this process.  A child the
# program forks (multiprocessing, os.fork) is not ox-profile: it gets the
# program's own handlers back, so that it ends, and reports its exit status,
# as it would without ox-profile.
_active: "weakref.WeakSet[Signals]" = weakref.WeakSet()


def _restore_in_child() -> None:
    for handlers in list(_active):
        handlers.restore()


os.register_at_fork(after_in_child=_restore_in_child)
