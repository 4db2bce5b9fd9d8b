"""ox_profile: a statistical profiler for Python whose sampling engine is C.

A native thread samples every Python thread (without the GIL on CPython
3.11) at up to 10 kHz; results come as one :class:`Profile` that renders as a
top table, a flame graph, speedscope, folded stacks or pprof.
"""

import os as _os

from ox_profile import _engine
from ox_profile._version import __version__
from ox_profile.labels import get_label, label, set_label
from ox_profile.profile import Frame, Function, FunctionStat, Profile, StackSample, ThreadInfo
from ox_profile.profiler import Profiler

# The profiler's own frames never appear in a profile.
_engine._set_own_prefix(_os.path.dirname(_os.path.abspath(__file__)) + _os.sep)

__all__ = [
    "Frame",
    "Function",
    "FunctionStat",
    "Profile",
    "Profiler",
    "StackSample",
    "ThreadInfo",
    "get_label",
    "label",
    "set_label",
    "__version__",
]
