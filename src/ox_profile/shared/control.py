"""The settings every process of a server follows: paused or not, the
sampling interval, and the last reset.

They live in one file of the shared directory (``control.oxp``, the shared
format with only metadata), replaced atomically and changed under an
exclusive lock (``flock`` on ``control.lock``) so two processes changing it
at once do not lose one of the changes.  Processes poll it (see
:mod:`ox_profile.shared.agent`); a process started later reads it first.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from typing import Optional, Tuple

from ox_profile import _engine, _validate
from ox_profile.shared.location import SharedDir

CONTROL_FILE = "control.oxp"
LOCK_FILE = "control.lock"
#: A control file is tiny; anything bigger is refused.
MAX_CONTROL_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Control:
    """What every process of the server should do."""

    paused: bool = True
    interval: float = 0.001
    #: Token of the last reset ("" before any): data published before it is stale.
    reset_id: str = ""
    #: Incremented by every change.
    seq: int = 0
    #: Who made the last change, and when (epoch seconds).
    by_pid: int = 0
    at: float = 0.0

    def as_meta(self) -> dict:
        """The file's metadata."""
        return {"kind": "control", "paused": self.paused, "interval": self.interval,
                "reset_id": self.reset_id, "seq": self.seq, "by_pid": self.by_pid, "at": self.at}

    @classmethod
    def from_meta(cls, meta: dict) -> "Control":
        """Parse the file's metadata; ValueError when it is not a control record."""
        if meta.get("kind") != "control":
            raise ValueError("not a control record")
        interval = meta.get("interval")
        if not isinstance(interval, (int, float)) or isinstance(interval, bool):
            raise ValueError("control record without an interval")
        reset_id = meta.get("reset_id", "")
        seq = meta.get("seq", 0)
        if not isinstance(reset_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("malformed control record")
        return cls(paused=bool(meta.get("paused", True)), interval=_validate.interval(float(interval)),
                   reset_id=reset_id[:100], seq=seq, by_pid=int(meta.get("by_pid", 0) or 0),
                   at=float(meta.get("at", 0.0) or 0.0))


#: (inode, size, mtime in ns) of a file: changes whenever it is replaced.
Signature = Tuple[int, int, int]


def signature(shared: SharedDir) -> Optional[Signature]:
    """The control file's signature, or None when there is none."""
    try:
        st = os.stat(CONTROL_FILE, dir_fd=shared.fd, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read(shared: SharedDir) -> Optional[Control]:
    """The current settings, or None when nobody set any.  ValueError (with
    the reason) when the file is there but malformed."""
    try:
        meta, _timings, _total = _engine.share_read(shared.fd, CONTROL_FILE, MAX_CONTROL_BYTES)
    except FileNotFoundError:
        return None
    return Control.from_meta(meta)


class _Locked:
    """An exclusive flock on the directory's lock file, for a with block."""

    def __init__(self, shared: SharedDir) -> None:
        self._shared = shared
        self._fd = -1

    def __enter__(self) -> "_Locked":
        self._fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=self._shared.fd)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        # Unlocked explicitly: a child forked meanwhile holds a copy of the
        # descriptor, and closing ours alone would not release it.
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)


def update(shared: SharedDir, *, paused: Optional[bool] = None, interval: Optional[float] = None,
           reset: bool = False, default_interval: float = 0.001) -> Control:
    """Change the settings (only the ones given) and return the new ones.
    A malformed control file is replaced."""
    with _Locked(shared):
        try:
            current = read(shared) or Control(interval=default_interval)
        except ValueError:
            current = Control(interval=default_interval)
        now = time.time()
        changes: dict = {"seq": current.seq + 1, "by_pid": os.getpid(), "at": now}
        if paused is not None:
            changes["paused"] = bool(paused)
        if interval is not None:
            changes["interval"] = _validate.interval(interval)
        if reset:
            changes["reset_id"] = "%d-%d" % (time.time_ns(), os.getpid())
        new = dataclasses.replace(current, **changes)
        _engine.share_publish(shared.fd, CONTROL_FILE, None, new.as_meta(), None, MAX_CONTROL_BYTES)
        return new
