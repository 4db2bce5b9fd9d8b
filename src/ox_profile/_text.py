"""Text from the profiled program (function, file, thread and label names, a
script's path) made safe to write anywhere.

* :func:`encodable`: strings that cannot be encoded as UTF-8 (lone surrogates,
  as ``os.fsdecode`` makes of undecodable bytes) are escaped as Python's
  ``backslashreplace`` does, the convention the engine follows too:
  ``"job-\\udcff"`` is shown as the ten characters ``job-\\udcff``.
* :func:`visible`: for terminals, control characters (C0, DEL, C1: what ANSI
  and OSC escape sequences are made of) and the bidirectional controls that
  reorder what is shown are written as visible escapes (``\\x1b``,
  ``\\u202e``), so no name from the program can drive the terminal.
"""

from __future__ import annotations

import re

__all__ = ["encodable", "visible"]

_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group(0))
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def encodable(text: str) -> str:
    """``text``, with what UTF-8 cannot encode escaped (``\\udcff``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def visible(text: str) -> str:
    """``text`` with control characters and bidirectional controls escaped
    (``\\x1b``, ``\\u202e``), and what UTF-8 cannot encode escaped too."""
    return _INVISIBLE.sub(_escape, encodable(text))
