"""After a fork, every part of ox_profile that keeps per-process state (the
profilers' samplers, the shares' identities and threads, the Flask
blueprint's timings) re-arms itself in the child, in the order the parts
registered.

Python runs these hooks for ``os.fork()`` (multiprocessing, gunicorn...).
uWSGI forks its workers in C without them (unless ``--py-call-osafterfork``):
there its post-fork hook runs them, and :func:`check`, called on every
request by the Flask blueprint, catches any other server that forks in C.
The hooks run once per process, however many of these reach it.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List

_pid = os.getpid()
_hooks: List[Callable[[], None]] = []


def register(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every child this process forks (once, in order)."""
    _hooks.append(hook)


def _run_in_child() -> None:
    global _pid
    if os.getpid() == _pid:
        return
    _pid = os.getpid()
    for hook in list(_hooks):
        try:
            hook()
        except Exception as exc:  # never let the profiler break a fork
            try:
                print("ox_profile: after fork: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            except Exception:
                pass


def check() -> None:
    """Run the hooks now if this process was forked without them."""
    if _pid != os.getpid():
        _run_in_child()


os.register_at_fork(after_in_child=_run_in_child)

def _install_uwsgi_hook() -> None:
    """Inside uWSGI: run the hooks from its post-fork hook (chained to the
    one already set; through uwsgidecorators' chain when the app uses it)."""
    try:
        import uwsgi  # type: ignore[import-not-found]
    except ImportError:
        return
    decorators = sys.modules.get("uwsgidecorators")
    if decorators is not None:
        decorators.postfork(_run_in_child)
        return
    previous = getattr(uwsgi, "post_fork_hook", None)

    def post_fork() -> None:
        _run_in_child()
        if previous is not None:
            previous()

    uwsgi.post_fork_hook = post_fork


_install_uwsgi_hook()
