"""A web integration across the processes of a pre-fork server (gunicorn,
uWSGI...): each worker publishes its profile and request timings, any
worker's pages show them all merged, and pause, unpause, interval and reset
reach every worker (:mod:`ox_profile.shared`).

Configuration (a mapping: Flask's ``app.config``, read when the blueprint is
registered):

* ``OX_PROF_SHARED`` (default True): share between the server's processes;
* ``OX_PROF_SHARED_DIR``: the directory to share through (default: the
  ``OX_PROFILE_SHARED_DIR`` environment variable, else one chosen for the
  server, see :mod:`ox_profile.shared.location`);
* ``OX_PROF_PUBLISH_INTERVAL`` (default 1.0): seconds between publications,
  what a worker killed with SIGKILL loses at most.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ox_profile.shared import (Control, MergedView, ProcessShare, SharingUnavailable, merged_view,
                               open_server_dir, server_of)

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.ui.core.control import ProfilerControl

log = logging.getLogger("ox_profile")

#: Shortest and longest publishing interval accepted (seconds).
MIN_PUBLISH_INTERVAL = 0.05
MAX_PUBLISH_INTERVAL = 60.0


#: The one sharing started in this process (the first integration to ask).
_sharing_in_process: Optional["ControlSharing"] = None


class ControlSharing:
    """A profiler control's :class:`~ox_profile.shared.ProcessShare` and what
    it publishes; ``share`` is None when sharing is off, ``error`` says why."""

    def __init__(self, blueprint: "ProfilerControl") -> None:
        self._bp = blueprint
        self.share: Optional[ProcessShare] = None
        self.error = ""
        self.configured = False

    def setup(self, config: Any) -> None:
        """Start sharing as ``config`` (a mapping with ``get``) says; once per process."""
        global _sharing_in_process
        if self.configured:
            return
        self.configured = True
        if not config.get("OX_PROF_SHARED", True):
            self.error = "sharing between processes is off (OX_PROF_SHARED is false)"
            return
        if _sharing_in_process is not None and _sharing_in_process is not self:
            # Two shares of one process would publish the same process file
            # and follow the same controls: the first integration keeps it.
            self.error = ("not shared with the server's other processes: another ox_profile web "
                          "integration of this process shares already")
            log.warning("ox_profile: %s", self.error)
            return
        interval = config.get("OX_PROF_PUBLISH_INTERVAL", 1.0)
        if (not isinstance(interval, (int, float)) or isinstance(interval, bool) or not math.isfinite(interval)
                or not MIN_PUBLISH_INTERVAL <= interval <= MAX_PUBLISH_INTERVAL):
            raise ValueError("OX_PROF_PUBLISH_INTERVAL must be a number of seconds from %g to %g, not %r"
                             % (MIN_PUBLISH_INTERVAL, MAX_PUBLISH_INTERVAL, interval))
        server = server_of()
        try:
            shared = open_server_dir(config.get("OX_PROF_SHARED_DIR"), server)
        except SharingUnavailable as exc:
            self.error = "not shared with the server's other processes: %s" % (exc,)
            log.warning("ox_profile: %s", self.error)
            return
        self.share = ProcessShare(shared, self, publish_interval=float(interval),
                                  poll_interval=min(0.2, float(interval)), server=server)
        self.share.start()
        _sharing_in_process = self

    # -- ShareSource -----------------------------------------------------------

    def share_profiler(self) -> Optional[Any]:
        launcher = self._bp._launcher
        return launcher.profiler if launcher is not None else None

    def share_timings(self) -> Optional[list]:
        return self._bp.timings.export()

    def share_apply(self, settings: Control, reset: bool) -> None:
        self._bp._apply_settings(settings, reset)

    def share_after_fork_in_child(self) -> None:
        self._bp._after_fork_in_child()

    # -- reading -------------------------------------------------------------

    def view(self) -> Optional[MergedView]:
        """Every process's profile and timings, merged (None when not shared)."""
        share = self.share
        if share is None:
            return None
        share.poll_control()  # a reset not applied here yet is applied before reading
        own = self._bp.launcher.snapshot()
        return merged_view(share, own, dict(own.stats), self._bp.timings.export())

    def version(self) -> Tuple[Any, ...]:
        """What the merged data depends on besides this process's samples."""
        share = self.share
        if share is None:
            return ()
        files: List[Tuple[str, Optional[float]]] = [(n, share.shared.mtime(n)) for n in share.other_files()]
        return (share.applied_reset, tuple(files))


#: The Flask blueprint's name for it.
BlueprintSharing = ControlSharing
