"""Checks of user-supplied settings, shared by the API, the CLI and the web UI."""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Any, Mapping, Optional, Pattern

MIN_INTERVAL = 50e-6
MAX_INTERVAL = 10.0
MODES = ("wall", "cpu")
BACKENDS = ("auto", "nogil", "gil")
MAX_FILTER_LENGTH = 200
#: Environment variables and the values they take ("" or unset: the default).
BACKEND_ENV = "OX_PROFILE_BACKEND"
READER_ENV = "OX_PROFILE_READER"
READERS = ("direct", "vm", "procmem")


class BadEnvironment(ValueError):
    """An ``OX_PROFILE_*`` environment variable holds a value ox_profile does not know."""


def environment(env: Optional[Mapping[str, str]] = None) -> None:
    """Raise :class:`BadEnvironment`, naming the valid values, when
    ``OX_PROFILE_BACKEND`` or ``OX_PROFILE_READER`` is set to something else
    (a mistyped value must not silently pick another backend or reader)."""
    env = os.environ if env is None else env
    backend_value = env.get(BACKEND_ENV, "")
    if backend_value.strip().lower() not in ("",) + BACKENDS:
        raise BadEnvironment("%s=%r is not one of %s (or unset)"
                             % (BACKEND_ENV, backend_value, ", ".join(BACKENDS)))
    reader_value = env.get(READER_ENV, "")
    if reader_value not in ("",) + READERS:  # the engine reads it as is
        raise BadEnvironment("%s=%r is not one of %s (or unset)"
                             % (READER_ENV, reader_value, ", ".join(READERS)))


def interval(value: Any) -> float:
    """The interval in seconds, or ValueError/TypeError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("interval must be a number of seconds, not %s" % type(value).__name__)
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("interval must be a finite number of seconds, got %r" % (value,))
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValueError("interval must be between %g and %g seconds, got %r" % (MIN_INTERVAL, MAX_INTERVAL, value))
    return seconds


def mode(value: Any) -> str:
    """'wall' or 'cpu'."""
    if value not in MODES:
        raise ValueError("mode must be one of %s, not %r" % (", ".join(MODES), value))
    return value


def backend(value: Any) -> Optional[str]:
    """None, 'auto', 'nogil' or 'gil'."""
    if value is not None and value not in BACKENDS:
        raise ValueError("backend must be one of %s (or None), not %r" % (", ".join(BACKENDS), value))
    return value


def max_records(value: Any) -> Optional[int]:
    """None (all) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("max_records must be a positive integer or None, not %s" % type(value).__name__)
    if value <= 0:
        raise ValueError("max_records must be a positive integer or None, got %r" % (value,))
    return int(value)


def limit(value: Any) -> Optional[int]:
    """None (no limit) or a positive int: how many rows to show."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError("limit must be a positive integer or None, not %r" % (value,))
    return value


def regex(value: Any, name: str = "re_filter") -> Optional[Pattern[str]]:
    """A compiled pattern, None for 'everything' (None, "" and ".*"), or
    ValueError for a bad one; ``name`` is the parameter the messages name.
    A pattern already compiled (by the program, not typed by a user) is
    taken as it is, without the length cap."""
    if value is None or value == "" or value == ".*":
        return None
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise TypeError("%s must be a string, not %s" % (name, type(value).__name__))
    if len(value) > MAX_FILTER_LENGTH:
        raise ValueError("%s is longer than %d characters" % (name, MAX_FILTER_LENGTH))
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError("invalid %s %r: %s" % (name, value, exc)) from None
