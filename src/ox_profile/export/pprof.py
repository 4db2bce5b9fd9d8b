"""pprof: a gzipped ``perftools.profiles.Profile`` protobuf, read by ``go tool pprof``,
pprof's web UI and most continuous-profiling services.  The message itself is
encoded in C (``Profile.pprof_bytes``)."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

extension = ".pb.gz"
binary = True


#: Messages larger than this are compressed at gzip level 1 by default (about 9x
#: faster than level 6 for ~10% more bytes), so big profiles export quickly.
FAST_COMPRESS_ABOVE = 4 * 1024 * 1024


def render(profile: "Profile", compresslevel: Optional[int] = None) -> bytes:
    """The gzip-compressed pprof message of ``profile`` (``compresslevel`` 0-9;
    default 6, or 1 for messages over :data:`FAST_COMPRESS_ABOVE` bytes)."""
    raw = profile.pprof_bytes()
    if compresslevel is None:
        compresslevel = 1 if len(raw) > FAST_COMPRESS_ABOVE else 6
    return gzip.compress(raw, compresslevel=compresslevel, mtime=0)
