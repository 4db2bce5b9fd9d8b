"""Exporters: one module per output format, and dispatch by name or file extension.

Every format module exposes ``render(profile, **options) -> str | bytes`` and the
attributes ``extension`` (the usual file suffix) and ``binary`` (whether
``render`` returns bytes).  Exporters read only the :class:`ox_profile.Profile`
object, never the C engine.

>>> from ox_profile import export
>>> export.format_for_path("out.speedscope.json")
'speedscope'
"""

from __future__ import annotations

import os
import tempfile
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

from ox_profile.export import collapsed, html, pprof, speedscope, text

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

__all__ = ["FORMATS", "EXTENSIONS", "format_for_path", "render", "save"]

#: Format name -> exporter module.
FORMATS: Dict[str, ModuleType] = {
    "text": text,
    "html": html,
    "speedscope": speedscope,
    "collapsed": collapsed,
    "pprof": pprof,
}

#: File name suffix (lower case) -> format name; longest suffixes are tried first.
EXTENSIONS: Tuple[Tuple[str, str], ...] = (
    (".speedscope.json", "speedscope"),
    (".pb.gz", "pprof"),
    (".collapsed", "collapsed"),
    (".folded", "collapsed"),
    (".pprof", "pprof"),
    (".html", "html"),
    (".txt", "text"),
)


def _choices() -> str:
    return ", ".join("%s (%s)" % (ext, fmt) for ext, fmt in EXTENSIONS)


def format_for_path(path: Union[str, "os.PathLike[str]"]) -> str:
    """The format name implied by the extension of ``path``.

    Raises ``ValueError`` naming the known extensions when there is no match.
    """
    name = os.path.basename(os.fspath(path)).lower()
    for ext, fmt in EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return fmt
    raise ValueError("cannot tell the profile format from the file name %r; use one of the "
                     "extensions %s, or give the format explicitly" % (os.fspath(path), _choices()))


def get_module(fmt: str) -> ModuleType:
    """The exporter module of format ``fmt``; ``ValueError`` listing the formats if unknown."""
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise ValueError("unknown profile format %r; choose one of: %s"
                         % (fmt, ", ".join(FORMATS))) from None


def render(profile: "Profile", fmt: str = "text", **options: Any) -> Union[str, bytes]:
    """``profile`` in format ``fmt`` (a name in :data:`FORMATS`)."""
    return get_module(fmt).render(profile, **options)


def save(profile: "Profile", path: Union[str, "os.PathLike[str]"], fmt: Optional[str] = None,
         **options: Any) -> str:
    """Write ``profile`` to ``path`` and return the path written.

    The format defaults from the extension of ``path``.  The file is written to a
    temporary file in the same directory and then renamed over ``path``, so a
    reader never sees a partial file and a failure leaves any old file intact.
    """
    path = os.fspath(path)
    if fmt is None:
        fmt = format_for_path(path)
    data = render(profile, fmt, **options)
    if isinstance(data, str):
        # Program strings come escaped from the engine; this is the last net.
        data = data.encode("utf-8", "backslashreplace")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
