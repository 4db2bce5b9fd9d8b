"""Where the processes of a server share their profiles: a private directory.

By default each server gets ``<base>/<root pid>-<root start time>`` where
``<base>`` is ``$XDG_RUNTIME_DIR/ox_profile`` when that runtime directory
exists and is this user's, else ``<temporary directory>/ox_profile-<uid>``.
A setting (``OX_PROFILE_SHARED_DIR``, or the Flask config
``OX_PROF_SHARED_DIR``) names the server's directory itself instead; every
process given the same directory shares one profile.

Directories are created private (0700) and must stay so: a directory that is
a symbolic link, belongs to another user or can be read by others is refused
with :class:`SharingUnavailable` saying why, and sharing is off.  Every file
operation is relative to the opened directory and never follows a symbolic
link.  Server directories whose root process is gone are removed when another
server of the same user starts sharing.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from typing import List, Optional

from ox_profile.shared.process import ProcessId, is_alive

#: Environment variable naming the shared directory (overrides the default).
ENV_DIR = "OX_PROFILE_SHARED_DIR"

#: Names of server directories under the base: "<pid>-<start>".
SERVER_DIR_RE = re.compile(r"^([0-9]{1,10})-([0-9]{1,20})$")


class SharingUnavailable(Exception):
    """The shared directory cannot be used safely (the message says why)."""


def default_base() -> str:
    """The directory under which each server gets its own."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        try:
            st = os.lstat(runtime)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            return os.path.join(runtime, "ox_profile")
    return os.path.join(tempfile.gettempdir(), "ox_profile-%d" % os.geteuid())


def _check_private(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise SharingUnavailable("%s is not a directory" % path)
    if st.st_uid != os.geteuid():
        raise SharingUnavailable("%s belongs to user %d, not to this process's user %d"
                                 % (path, st.st_uid, os.geteuid()))
    if st.st_mode & 0o077:
        raise SharingUnavailable("%s can be used by other users (mode %o; it must be 0700)"
                                 % (path, stat.S_IMODE(st.st_mode)))


def open_private_dir(path: str, dir_fd: Optional[int] = None, create: bool = True) -> int:
    """An fd of directory ``path`` (relative to ``dir_fd`` when given),
    created 0700 if missing; SharingUnavailable when it is a symbolic link,
    not ours, or open to others."""
    shown = path if dir_fd is None else "directory %s" % path
    if create:
        try:
            os.mkdir(path, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SharingUnavailable("cannot create %s: %s" % (shown, exc.strerror)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SharingUnavailable("%s is a symbolic link or not a directory" % shown) from None
        raise SharingUnavailable("cannot open %s: %s" % (shown, exc.strerror)) from None
    try:
        _check_private(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SharedDir:
    """An open, private shared directory: its path, its fd, and the file
    operations the sharing needs, all relative to the fd."""

    def __init__(self, path: str, fd: int, server: Optional[ProcessId]) -> None:
        self.path = path
        self.fd = fd
        #: The server's root process, when the directory was chosen by it.
        self.server = server

    def names(self) -> List[str]:
        """The file names in the directory."""
        try:
            return os.listdir(self.fd)
        except OSError:
            return []

    def remove(self, name: str) -> bool:
        """Remove file ``name`` (never a directory); whether it was there."""
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except OSError:
            return False

    def mtime(self, name: str) -> Optional[float]:
        """When ``name`` was last written (no symlink followed), or None."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime
        except OSError:
            return None

    def close(self) -> None:
        """Close the directory's fd."""
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def __repr__(self) -> str:
        return "<SharedDir %s>" % self.path


def open_server_dir(setting: Optional[str], server: ProcessId) -> SharedDir:
    """The shared directory of ``server``: ``setting`` when given (or the
    environment's ``OX_PROFILE_SHARED_DIR``), else its own directory under
    the default base.  Removes directories of servers that are gone."""
    chosen = setting or os.environ.get(ENV_DIR) or None
    if chosen:
        path = os.path.abspath(chosen)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise SharingUnavailable("cannot create %s: %s does not exist" % (path, parent))
        return SharedDir(path, open_private_dir(path), None)
    base = default_base()
    base_fd = open_private_dir(base)
    try:
        remove_dead_servers(base_fd, keep=server.key)
        fd = open_private_dir(server.key, dir_fd=base_fd)
    finally:
        os.close(base_fd)
    return SharedDir(os.path.join(base, server.key), fd, server)


def remove_dead_servers(base_fd: int, keep: str = "") -> List[str]:
    """Remove the directories of servers whose root process is gone; their
    names.  Only directories named like a server's, owned by this user and
    not symbolic links are touched."""
    removed = []
    try:
        names = os.listdir(base_fd)
    except OSError:
        return removed
    for name in names:
        match = SERVER_DIR_RE.match(name)
        if match is None or name == keep:
            continue
        if is_alive(ProcessId(int(match.group(1)), int(match.group(2)))):
            continue
        try:
            st = os.stat(name, dir_fd=base_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=base_fd)
        except OSError:
            continue
        try:
            for entry in os.listdir(fd):
                try:
                    os.unlink(entry, dir_fd=fd)
                except OSError:
                    pass
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=base_fd)
            removed.append(name)
        except OSError:
            pass
    return removed


def private_temp_dir(prefix: str = "ox-profile-") -> SharedDir:
    """A new private directory in the temporary directory (for one run of the
    command line with its child processes); remove it with
    :func:`remove_dir`."""
    path = tempfile.mkdtemp(prefix=prefix)
    return SharedDir(path, open_private_dir(path, create=False), None)


def remove_dir(shared: SharedDir) -> None:
    """Remove a directory made by :func:`private_temp_dir` and its files."""
    shared.close()
    shutil.rmtree(shared.path, ignore_errors=True)
