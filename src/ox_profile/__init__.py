"""ox_profile: a statistical profiler for Python whose sampling engine is C.

A native thread samples every Python thread (without the GIL on CPython
3.11) at up to 10 kHz; results come as one :class:`Profile` that renders as a
top table, a flame graph, speedscope, folded stacks or pprof.
"""

import os as _os
from typing import Any

from ox_profile import _engine
from ox_profile._version import __version__
from ox_profile.labels import get_label, label, set_label
from ox_profile.profile import Frame, Function, FunctionStat, Profile, StackSample, ThreadInfo
from ox_profile.profiler import Profiler

# The profiler's own frames never appear in a profile.
_engine._set_own_prefix(_os.path.dirname(_os.path.abspath(__file__)) + _os.sep)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ox_profile`` in IPython or Jupyter: adds the ``%ox_profile``
    (a statement) and ``%%ox_profile`` (a cell) magics."""
    from ox_profile.ipython import load_ipython_extension as load

    load(ipython)


__all__ = [
    "Frame",
    "Function",
    "FunctionStat",
    "Profile",
    "Profiler",
    "StackSample",
    "ThreadInfo",
    "get_label",
    "load_ipython_extension",
    "label",
    "set_label",
    "__version__",
]
