"""``ox-profile run`` never loses a profile: signals while the program's
threads are joined, SIGHUP and SIGQUIT, a signal while the profile is being
written, a broken pipe on stderr; and ``-o`` writes through to what is not a
regular file (devices, FIFOs, symlinks' targets), reports write errors, and
creates fallback files private."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

WROTE = re.compile(r"^ox_profile: wrote (\w+) profile to (.+?)( instead)?$", re.M)

BUSY = r'''
import sys, time
def oxe_busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
'''


def _start(script: Path, out: str, tmp_path: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ox_profile", "run", "-o", out, str(script)],
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def _folded_total(path: Path) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines())


# -- 6. signals and broken pipes --------------------------------------------------------

JOINING = BUSY + r'''
import threading
def oxe_worker():
    while True:
        time.sleep(0.05)
threading.Thread(target=oxe_worker, name="oxe-worker").start()   # not a daemon
oxe_busy(0.2)
print("ready", flush=True)
'''


def test_sigterm_while_the_programs_threads_are_joined(tmp_path):
    script = tmp_path / "joining.py"
    script.write_text(JOINING)
    out = tmp_path / "p.collapsed"
    proc = _start(script, str(out), tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.4)  # the script has returned: ox-profile waits for oxe-worker
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    assert proc.returncode == 143, err
    assert _folded_total(out) > 0 and "oxe_busy" in out.read_text(), err
    assert WROTE.search(err), err


SLEEPING = BUSY + r'''
oxe_busy(0.2)
print("ready", flush=True)
while True:
    time.sleep(0.05)
'''


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1],
                         ids=["SIGHUP", "SIGQUIT", "SIGTERM", "SIGUSR1"])
def test_terminating_signals_write_the_profile(tmp_path, signum):
    script = tmp_path / "sleeping.py"
    script.write_text(SLEEPING)
    out = tmp_path / "p.collapsed"
    proc = _start(script, str(out), tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    proc.send_signal(signum)
    err = _finish(proc)
    assert proc.returncode == 128 + signum, err
    assert _folded_total(out) > 0 and "oxe_busy" in out.read_text(), err


def test_signal_while_writing_to_a_blocked_output_falls_back(tmp_path):
    """A FIFO nobody reads blocks the write: SIGTERM then saves the profile
    to the fallback file instead of hanging or losing it."""
    script = tmp_path / "short.py"
    script.write_text(BUSY + "oxe_busy(0.2)\nprint('ready', flush=True)\n")
    fifo = tmp_path / "p.collapsed"
    os.mkfifo(fifo)
    proc = _start(script, str(fifo), tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # the report is printed; ox-profile waits for a reader of the FIFO
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    assert proc.returncode == 143, err
    m = WROTE.search(err)
    assert m and m.group(3) == " instead", err
    fallback = Path(m.group(2))
    try:
        assert _folded_total(fallback) > 0
    finally:
        fallback.unlink()


STDERR_CHATTY = BUSY + r'''
print("first line", file=sys.stderr, flush=True)
time.sleep(0.5)
oxe_busy(0.2)
for i in range(100):
    print("more output", i, file=sys.stderr)
'''


def test_broken_pipe_on_stderr_still_writes_the_profile(tmp_path):
    script = tmp_path / "chatty.py"
    script.write_text(STDERR_CHATTY)
    out = tmp_path / "p.collapsed"
    proc = subprocess.Popen([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                            cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr.readline().strip() == b"first line"
        proc.stderr.close()  # as `... 2>&1 | head -1` does
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _folded_total(out) > 0 and "oxe_busy" in out.read_text()
    assert proc.returncode == 1  # the program's own status: its prints failed


def test_broken_pipe_through_a_shell_pipeline(tmp_path):
    script = tmp_path / "ok.py"
    script.write_text(BUSY + "oxe_busy(0.3)\n")
    out = tmp_path / "p.txt"
    proc = subprocess.run("set -o pipefail; %s -m ox_profile run -o %s %s 2>&1 | head -1"
                          % (sys.executable, out, script), shell=True, executable="/bin/bash",
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "oxe_busy" in out.read_text()


# -- 7. -o writes through to what is not a regular file ------------------------------------

QUICK = BUSY + "oxe_busy(0.2)\n"


def _run(args: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "quick.py"
    script.write_text(QUICK)
    return subprocess.run([sys.executable, "-m", "ox_profile", "run"] + args + [str(script)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120)


def _device(tmp_path: Path, name: str, minor: int) -> Path:
    """A character device like /dev/null (minor 3) or /dev/full (7), made in
    tmp_path so that a failure cannot damage the real ones."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip("cannot create a device node here (%s)" % exc)
    return path


def test_output_to_a_device_is_written_through(tmp_path):
    null = _device(tmp_path, "null", 3)
    proc = _run(["--format", "collapsed", "-o", str(null)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode), "the device node was replaced"
    assert WROTE.search(proc.stderr)


def test_full_device_is_reported_and_falls_back_to_a_private_file(tmp_path):
    full = _device(tmp_path, "full", 7)
    proc = _run(["--format", "collapsed", "-o", str(full)], tmp_path)
    assert proc.returncode != 0
    assert stat.S_ISCHR(os.stat(full).st_mode), "the device node was replaced"
    assert "could not write the profile to %s" % full in proc.stderr
    assert "No space left on device" in proc.stderr
    m = WROTE.search(proc.stderr)
    assert m and m.group(3) == " instead", proc.stderr
    fallback = Path(m.group(2))
    try:
        assert stat.S_IMODE(fallback.stat().st_mode) == 0o600
        assert _folded_total(fallback) > 0
    finally:
        fallback.unlink()


def test_symlink_is_followed_not_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "profile.collapsed"
    target.write_text("old\n")
    link = tmp_path / "link.collapsed"
    link.symlink_to(target)
    proc = _run(["-o", str(link)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "oxe_busy" in target.read_text()
    # a link to a file that does not exist yet: the file is created there
    dangling = tmp_path / "new.collapsed"
    dangling.symlink_to(tmp_path / "real" / "new.collapsed")
    proc = _run(["-o", str(dangling)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert dangling.is_symlink() and "oxe_busy" in (tmp_path / "real" / "new.collapsed").read_text()


def test_fifo_reader_gets_the_whole_profile(tmp_path):
    fifo = tmp_path / "p.collapsed"
    os.mkfifo(fifo)
    received: List[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = _run(["-o", str(fifo)], tmp_path)
    reader.join(60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and b"oxe_busy" in received[0]


def test_regular_file_is_replaced_atomically_keeping_its_mode(tmp_path):
    out = tmp_path / "p.collapsed"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    proc = _run(["-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "oxe_busy" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.collapsed")] == []

