"""ox_profile.shared with real processes: which server a process belongs to,
the private directory and its refusals, the shared settings under
concurrent changes, publishing, what a SIGKILL loses, and the files of
processes and servers that are gone."""

from __future__ import annotations

import json
import re
import threading
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, run_python

import ox_profile
from ox_profile import _engine
from ox_profile.shared import control, location
from ox_profile.shared.agent import PROCESS_FILE_RE, ProcessShare, process_file
from ox_profile.shared.children import _ProfilerSource
from ox_profile.shared.location import SharedDir, SharingUnavailable, open_private_dir, open_server_dir
from ox_profile.shared.merge import merged_view
from ox_profile.shared.process import ProcessId, is_alive, server_of, start_time, this_process


@pytest.fixture
def shared(tmp_path):
    path = tmp_path / "srv"
    d = SharedDir(str(path), open_private_dir(str(path)), None)
    yield d
    d.close()


# -- processes -------------------------------------------------------------------------


def test_a_process_is_its_pid_and_start_time():
    me = this_process()
    assert me.pid == os.getpid() and me.start > 0 and is_alive(me)
    assert not is_alive(ProcessId(me.pid, me.start + 1)), "same pid, another start: another process"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert start_time(child.pid) is None


SERVER_TREE = r'''
import json, os, socket, sys, time
sys.path.insert(0, %r)
from ox_profile.shared.process import server_of
how = sys.argv[1]
out = {"parent": os.getpid(), "parent_root": server_of().pid}
if how == "fork":
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(server_of().pid).encode()); os._exit(0)
    os.waitpid(pid, 0)
    out["child_root"] = json.loads(os.read(r, 100))
else:
    import subprocess
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    fds = (listener.fileno(),) if how == "socket" else ()
    code = "import sys; sys.path.insert(0, %%r); from ox_profile.shared.process import server_of; print(server_of().pid)" %% sys.path[0]
    child = subprocess.run([sys.executable, "-c", code], pass_fds=fds, capture_output=True, text=True)
    out["child_root"] = int(child.stdout)
print(json.dumps(out))
'''


@pytest.mark.parametrize("how, joins", [("fork", True), ("socket", True), ("other", False)])
def test_the_server_of_a_process(how, joins):
    """A forked worker (same program) and a child holding its parent's
    listening socket belong to the parent's server; another program started
    by it is a server of its own."""
    proc = run_python(SERVER_TREE % str(ROOT / "src"), args=[how])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["parent_root"] == out["parent"], "the test's python is not a copy of pytest"
    if joins:
        assert out["child_root"] == out["parent"]
    else:
        assert out["child_root"] not in (out["parent"],)


# -- the directory ----------------------------------------------------------------------


def test_directories_are_created_private(tmp_path):
    fd = open_private_dir(str(tmp_path / "new"))
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700


def test_unsafe_directories_are_refused_with_the_reason(tmp_path):
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    with pytest.raises(SharingUnavailable, match="other users"):
        open_private_dir(str(tmp_path / "open"))
    (tmp_path / "real").mkdir(mode=0o700)
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(SharingUnavailable, match="symbolic link"):
        open_private_dir(str(tmp_path / "link"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SharingUnavailable):
        open_private_dir(str(tmp_path / "file"))
    if os.geteuid() == 0:
        (tmp_path / "theirs").mkdir(mode=0o700)
        os.chown(tmp_path / "theirs", 65534, 65534)
        with pytest.raises(SharingUnavailable, match="belongs to user 65534"):
            open_private_dir(str(tmp_path / "theirs"))


def test_server_directories_and_the_cleanup_of_dead_servers(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    os.chmod(tmp_path, 0o700)
    base = tmp_path / "ox_profile"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # A server whose root is gone, one alive (this process), and a name that is not a server's.
    first = open_server_dir(None, ProcessId(dead.pid, 12345))
    (base / first.server.key / "p1-1.oxp").write_bytes(b"old")
    first.close()
    (base / "not-a-server").mkdir()
    me = server_of()
    shared = open_server_dir(None, me)
    assert shared.path == str(base / me.key) and stat.S_IMODE(os.stat(shared.path).st_mode) == 0o700
    assert sorted(os.listdir(base)) == sorted([me.key, "not-a-server"]), "the dead server's directory is gone"
    shared.close()
    # A setting names the directory itself.
    chosen = open_server_dir(str(tmp_path / "chosen"), me)
    assert chosen.path == str(tmp_path / "chosen") and chosen.server is None
    chosen.close()
    monkeypatch.setenv("OX_PROFILE_SHARED_DIR", str(tmp_path / "from-env"))
    from_env = open_server_dir(None, me)
    assert from_env.path == str(tmp_path / "from-env")
    from_env.close()


# -- settings ---------------------------------------------------------------------------


def test_settings_survive_concurrent_changes(shared):
    """Eight processes change the settings 25 times each at once: no change is
    lost (the lock), and every reading is a whole record (atomic replace)."""
    code = textwrap.dedent('''
        import os, sys
        sys.path.insert(0, %r)
        from ox_profile.shared import control
        from ox_profile.shared.location import SharedDir, open_private_dir
        d = SharedDir(sys.argv[1], open_private_dir(sys.argv[1], create=False), None)
        for i in range(25):
            control.update(d, paused=bool(i %% 2), interval=0.001 * (1 + i %% 3))
            assert control.read(d).seq >= 1
    ''' % str(ROOT / "src"))
    procs = [subprocess.Popen([sys.executable, "-c", code, shared.path]) for _ in range(8)]
    assert all(p.wait(60) == 0 for p in procs)
    final = control.read(shared)
    assert final.seq == 200


def test_a_malformed_settings_file_is_reported_and_replaced(shared):
    with open(os.path.join(shared.path, control.CONTROL_FILE), "wb") as fh:
        fh.write(b"OXPSHARE" + b"\x01" * 100)
    with pytest.raises(ValueError):
        control.read(shared)
    new = control.update(shared, paused=False)
    assert control.read(shared) == new and new.paused is False and new.seq == 1


# -- publishing, merging, loss -------------------------------------------------------------


def test_published_processes_merge_with_the_live_one(shared):
    prof = ox_profile.Profiler(interval=0.0005)
    with prof:
        with ox_profile.label("work"):
            end = time.perf_counter() + 0.2
            while time.perf_counter() < end:
                pass
    # Two "other processes": this profile under other identities.
    for pid in (os.getpid() + 100000, os.getpid() + 100001):
        meta = {"kind": "process", "pid": pid, "start": 1, "command": "worker %d" % pid, "state": "paused",
                "written_at": time.time(), "final": True, "reset_id": "", "stats.samples": 5,
                "stats.rate_hz": 999.0, "stats.ticks": 100}
        _engine.share_publish(shared.fd, "p%d-1.oxp" % pid, prof.database, meta, None, 1 << 30)
    share = ProcessShare(shared, _ProfilerSource(prof), follow=False)
    own = prof.snapshot()
    view = merged_view(share, own, dict(own.stats), None)
    profile = view.profile
    assert profile.total_samples == 3 * own.total_samples
    assert [p.state for p in profile.processes] == ["not started", "exited", "exited"]
    assert profile.processes[0].current and profile.processes[0].pid == os.getpid()
    for info in profile.processes:
        alone = profile.filter(processes=[info.pid])
        assert alone.total_samples == info.samples == own.total_samples
        assert alone.label_hits() == own.label_hits()
    assert profile.stats["processes"] == 3 and profile.stats["shared_skipped"] == 0
    share.close()


def test_a_worker_killed_with_sigkill_loses_at_most_one_interval(shared):
    """A process publishing every second is killed at a random moment: its
    file holds what it had at most about one interval before."""
    code = textwrap.dedent('''
        import os, sys, time
        sys.path.insert(0, %r)
        import ox_profile
        from ox_profile.shared.agent import ProcessShare
        from ox_profile.shared.children import _ProfilerSource
        from ox_profile.shared.location import SharedDir, open_private_dir
        d = SharedDir(sys.argv[1], open_private_dir(sys.argv[1], create=False), None)
        prof = ox_profile.Profiler(interval=0.001).start()
        ProcessShare(d, _ProfilerSource(prof), follow=False, publish_interval=1.0).start()
        while True:
            end = time.perf_counter() + 0.01
            while time.perf_counter() < end:
                pass
            print(time.time(), prof.stats()["total_hits"], flush=True)
    ''' % str(ROOT / "src"))
    child = subprocess.Popen([sys.executable, "-c", code, shared.path], stdout=subprocess.PIPE, text=True)
    try:
        last = None
        deadline = time.time() + 2.5 + (os.getpid() % 7) / 10  # some point between publications
        for line in child.stdout:
            last = line.split()
            if time.time() >= deadline:
                break
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    live_at, live_hits = float(last[0]), int(last[1])
    proc = ProcessId(child.pid, 0)
    name = [n for n in os.listdir(shared.path) if PROCESS_FILE_RE.match(n)][0]
    meta, _timings, published = _engine.share_read(shared.fd, name, 1 << 30)
    assert not is_alive(ProcessId(child.pid, int(PROCESS_FILE_RE.match(name).group(2))))
    assert meta["final"] is False
    lost_seconds = killed_at - meta["written_at"]
    rate = live_hits / max(meta["stats.duration"], 0.1) if meta.get("stats.duration") else 1000.0
    # At most one publishing interval (1 s), plus scheduling slack on a busy machine.
    assert lost_seconds <= 1.5, lost_seconds
    assert published >= live_hits - rate * 1.5 - 50, (published, live_hits, rate)
    assert published <= live_hits + rate * 0.1
    assert proc.pid == meta["pid"]


def test_files_of_gone_processes_are_kept_until_reset(shared):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db = _engine.Database()
    _engine.share_publish(shared.fd, "p%d-77.oxp" % dead.pid, db, {"pid": dead.pid, "final": True, "reset_id": ""},
                          None, 1 << 20)
    with open(os.path.join(shared.path, ".p%d-77.oxp.%d.tmp" % (dead.pid, dead.pid)), "wb") as fh:
        fh.write(b"half")
    old = time.time() - 3600
    os.utime(os.path.join(shared.path, ".p%d-77.oxp.%d.tmp" % (dead.pid, dead.pid)), (old, old))
    prof = ox_profile.Profiler()
    share = ProcessShare(shared, _ProfilerSource(prof), follow=True)
    share.publish(force=True)
    assert "p%d-77.oxp" % dead.pid in share.other_files()
    own = prof.snapshot()
    view = merged_view(share, own, dict(own.stats), None)
    assert [p.state for p in view.profile.processes] == ["not started", "exited"]
    share.change(reset=True)
    assert share.other_files() == []
    assert sorted(os.listdir(shared.path)) == sorted(["control.lock", "control.oxp", share.file])
    share.close()


def test_a_fork_while_locks_are_held_hangs_neither_side(tmp_path):
    """A worker forked while its parent's share thread holds the request
    timings' lock and the settings' lock: the child records requests, and
    the parent changes the settings while the child (holding copies of the
    parent's descriptors) still runs."""
    pytest.importorskip("flask")
    code = textwrap.dedent('''
        import os, sys, time
        sys.path.insert(0, %r)
        from flask import Flask
        from ox_profile.ui.flask import OX_PROF_BP
        from ox_profile.shared import control
        app = Flask("forky")
        app.config.update(OX_PROF_SHARED_DIR=sys.argv[1], OX_PROF_USERS={"a"})
        app.register_blueprint(OX_PROF_BP)
        share = OX_PROF_BP.sharing.share
        with OX_PROF_BP.timings._lock:          # as when its share thread publishes
            with control._Locked(share.shared):  # ... or changes the settings
                pid = os.fork()
                if pid == 0:
                    OX_PROF_BP.timings.record("child", 0.001)
                    time.sleep(3)
                    os._exit(0 if OX_PROF_BP.timings.count() == 1 else 3)
        t0 = time.time()
        OX_PROF_BP.pause()                       # the settings' lock again, while the child runs
        waited = time.time() - t0
        deadline = time.time() + 20
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9); status = -1
        print("waited %%.2f status %%d" %% (waited, status))
    ''' % str(ROOT / "src"))
    proc = run_python(code, args=[str(tmp_path / "shared")], timeout=60)
    assert proc.returncode == 0, proc.stderr
    waited, status = proc.stdout.split()[1], int(proc.stdout.split()[3])
    assert float(waited) < 2.0 and status == 0, proc.stdout


def test_the_share_thread_never_takes_the_process_signals(shared):
    """The kernel hands a process-directed signal to any thread that does not
    block it; caught there by a Python handler, it would leave the main
    thread blocked in a system call (a multiprocessing worker waiting on a
    lock would never die of its SIGTERM).  The share thread blocks them."""
    prof = ox_profile.Profiler()
    share = ProcessShare(shared, _ProfilerSource(prof), follow=False).start()
    try:
        tid = share._thread.native_id
        with open("/proc/self/task/%d/status" % tid) as fh:
            blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", fh.read()).group(1), 16)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            assert blocked & (1 << (sig - 1)), signal.Signals(sig).name
        assert not blocked & (1 << (signal.SIGSEGV - 1)), "faults must still reach it"
        with open("/proc/self/task/%d/status" % threading.get_native_id()) as fh:
            mine = int(re.search(r"SigBlk:\s*([0-9a-f]+)", fh.read()).group(1), 16)
        assert not mine & (1 << (signal.SIGTERM - 1)), "the caller's mask is restored"
    finally:
        share.stop(final=False)
        share.close()


def test_a_directory_used_again_forgets_the_servers_that_are_gone(shared):
    """A directory given by a setting outlives a server: when a new one starts
    sharing there, files of processes whose server is gone are removed;
    those of a live server's gone processes (its exited workers) stay."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    db = _engine.Database()
    me = server_of()
    files = {"old-run": (gone.pid, "%d-5" % gone.pid), "live-server": (gone.pid + 1, me.key)}
    for what, (pid, server) in files.items():
        _engine.share_publish(shared.fd, "p%d-9.oxp" % pid, db, {"pid": pid, "server": server}, None, 1 << 20)
    share = ProcessShare(shared, _ProfilerSource(ox_profile.Profiler()), follow=False, server=me).start()
    try:
        names = set(os.listdir(shared.path))
        assert "p%d-9.oxp" % gone.pid not in names
        assert "p%d-9.oxp" % (gone.pid + 1) in names
        assert _engine.share_read(shared.fd, share.file, 1 << 20)[0]["server"] == me.key
    finally:
        share.stop(final=False)
        share.close()
