"""Readable file names for tables and pages: a module's file relative to the
``sys.path`` entry it was imported from (``docutils/statemachine.py`` rather
than ``/home/me/.venv/lib/python3.11/site-packages/docutils/statemachine.py``).

Exports keep the full path in their file fields; tooltips show it too.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Iterable, Optional, Sequence, Tuple

__all__ = ["short_path", "PathShortener"]


def _module_tail(filename: str, module: str) -> Optional[str]:
    """The part of ``filename`` that module ``module`` names (``pkg/mod.py``,
    ``pkg/__init__.py``), when the file is where its name says it is."""
    if not module or module in ("?", "__main__") or not module.replace(".", "").replace("_", "").isalnum():
        return None
    stem, ext = os.path.splitext(filename)
    if not ext:
        return None
    parts = module.split(".")
    for tail in (os.sep.join(parts), os.sep.join(parts + ["__init__"])):
        if stem.endswith(os.sep + tail):
            return tail + ext
    return None


def _under(filename: str, root: str) -> Optional[str]:
    prefix = root if root.endswith(os.sep) else root + os.sep
    return filename[len(prefix):] if filename.startswith(prefix) and len(filename) > len(prefix) else None


def short_path(filename: str, module: str = "", roots: Sequence[str] = ()) -> str:
    """``filename`` made readable: relative to the ``sys.path`` entry module
    ``module`` was imported from, else to the longest of ``roots`` (absolute
    directories, e.g. ``sys.path`` and the working directory) that holds it;
    else unchanged (also for names like ``<frozen runpy>`` or ``<string>``)."""
    if not os.path.isabs(filename):
        return filename
    tail = _module_tail(filename, module)
    if tail is not None:
        return tail
    best: Optional[str] = None
    for root in roots:
        rel = _under(filename, root)
        if rel is not None and (best is None or len(rel) < len(best)):
            best = rel
    return best if best is not None else filename


def default_roots(path: Optional[Iterable[str]] = None) -> Tuple[str, ...]:
    """The absolute directories of ``path`` (default ``sys.path``) plus the
    working directory; the file system root is left out."""
    roots = []
    for entry in list(sys.path if path is None else path) + [""]:
        if not isinstance(entry, str):
            continue
        try:
            absolute = os.path.abspath(entry or os.curdir)
        except (OSError, ValueError):  # no working directory any more
            continue
        if os.path.dirname(absolute) != absolute and absolute not in roots:
            roots.append(absolute)
    return tuple(roots)


class PathShortener:
    """:func:`short_path` with fixed roots and a cache (many functions share a file)."""

    def __init__(self, roots: Optional[Sequence[str]] = None) -> None:
        self.roots: Tuple[str, ...] = default_roots() if roots is None else tuple(roots)
        self._cache: Dict[Tuple[str, str], str] = {}

    def __call__(self, filename: str, module: str = "") -> str:
        key = (filename, module)
        short = self._cache.get(key)
        if short is None:
            short = self._cache[key] = short_path(filename, module, self.roots)
        return short
