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

import errno
import os
import stat
import tempfile
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

from ox_profile.export import collapsed, html, pprof, speedscope, text

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

__all__ = ["FORMATS", "EXTENSIONS", "format_for_path", "render", "render_bytes", "save", "write"]

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


def render_bytes(profile: "Profile", fmt: str = "text", **options: Any) -> bytes:
    """``profile`` in format ``fmt``, as the bytes of a file (text is UTF-8)."""
    data = render(profile, fmt, **options)
    if isinstance(data, str):
        # Program strings come escaped from the engine; this is the last net.
        data = data.encode("utf-8", "backslashreplace")
    return data


def save(profile: "Profile", path: Union[str, "os.PathLike[str]"], fmt: Optional[str] = None,
         **options: Any) -> str:
    """Write ``profile`` to ``path`` (see :func:`write`) and return the path written.

    The format defaults from the extension of ``path``.
    """
    path = os.fspath(path)
    if fmt is None:
        fmt = format_for_path(path)
    return write(path, render_bytes(profile, fmt, **options))


def write(path: Union[str, "os.PathLike[str]"], data: bytes) -> str:
    """Write ``data`` to ``path`` and return the path.

    What exists and is not a regular file (a device such as ``/dev/null`` or
    ``/dev/stdout``, a FIFO, a symlink to one) is written through, and any
    error (a full disk: ``/dev/full``) raised.  A regular file, or a new one,
    is written to a temporary file next to it and renamed over it, so a reader
    never sees a partial file and a failure leaves any old file intact; a
    symlink is followed (the file it points to is replaced, the link stays)
    and an existing file keeps its permission bits.
    """
    path = os.fspath(path)
    try:
        existing: Optional[os.stat_result] = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(path, "wb") as fh:  # close() reports what the last write could not
            fh.write(data)
        return path
    target = os.path.realpath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target),
                               prefix="." + os.path.basename(target) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if existing is not None:
            mode = stat.S_IMODE(existing.st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp makes it 0600; give it a new file's usual mode
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
