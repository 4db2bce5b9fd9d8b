"""One profile for several processes: the workers of a pre-fork server
(gunicorn, uWSGI), or a program and its child processes.

Each process samples itself and publishes its data, in the engine's
shared format (engine/share.h: versioned, checksummed, written and read in
C), into a private directory of the server; any process merges them all (in
C) into one :class:`~ox_profile.Profile` whose ``processes`` list says who
is in it.  The same directory carries the settings every process follows
(paused or not, interval, reset).  No server process, no network.

* :mod:`.process`: process identity, liveness, the server a process belongs to;
* :mod:`.location`: the private directory;
* :mod:`.control`: the shared settings;
* :mod:`.agent`: a process's publishing and following (:class:`ProcessShare`);
* :mod:`.merge`: the merged view.
"""

from ox_profile.shared.agent import ProcessShare, ShareSource
from ox_profile.shared.control import Control
from ox_profile.shared.location import SharedDir, SharingUnavailable, open_server_dir
from ox_profile.shared.merge import MergedView, merged_view
from ox_profile.shared.process import ProcessId, server_of, this_process

__all__ = ["ProcessShare", "ShareSource", "Control", "SharedDir", "SharingUnavailable", "open_server_dir",
           "MergedView", "merged_view", "ProcessId", "server_of", "this_process"]
