"""Text from the profiled program (function, file, thread and label names, a
script's path) made safe to write anywhere.

* :func:`encodable`: strings that cannot be encoded as UTF-8 (lone surrogates,
  as ``os.fsdecode`` makes of undecodable bytes) are escaped as Python's
  ``backslashreplace`` does, the convention the engine follows too:
  ``"job-\\udcff"`` is shown as the ten characters ``job-\\udcff``.
"""

from __future__ import annotations

__all__ = ["encodable"]


def encodable(text: str) -> str:
    """``text``, with what UTF-8 cannot encode escaped (``\\udcff``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
