"""The shared-profile format (engine/share.c): what a process publishes for
the other processes of its server, read back and merged in C.  Round trips
keep every row, label, idle flag and thread; truncated, corrupted and fuzzed
files are refused with a reason, never a crash; files are private and never
read or written through a symbolic link; a file is no bigger than the
database's memory cap."""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
import zlib

import pytest

from conftest import run_python, spin

import ox_profile
from ox_profile import _engine

BIG = 1 << 30


def _crc_fixed(data: bytes) -> bytes:
    """``data`` with its header's CRC-32 recomputed (offset 24, computed with 0 there)."""
    zeroed = data[:24] + b"\0\0\0\0" + data[28:]
    return data[:24] + struct.pack("<I", zlib.crc32(zeroed) & 0xffffffff) + data[28:]


def _profile_with_labels_and_idle():
    """A profiler's database with a labelled busy thread, an idle thread and
    the main thread."""
    stop = threading.Event()

    def sleeper() -> None:
        while not stop.wait(0.01):
            pass

    prof = ox_profile.Profiler(interval=0.0005)  # first: it notes the names of threads started after
    idle = threading.Thread(target=sleeper, name="sleepy")
    idle.start()
    with prof:
        with ox_profile.label("endpoint-a"):
            spin(0.15)
        with ox_profile.label("endpoint-b"):
            spin(0.1)
        spin(0.05)
    stop.set()
    idle.join()
    prof.name_threads()
    return prof


def _row_key(snap, row, with_process=False):
    thread, label, stack, hits, gil, cpu, idle = row
    functions = snap.functions
    frames = tuple((functions[f], line) for f, line in snap.stack(stack))
    ident, native, name = snap.threads[thread]
    key = (ident, native, None if label < 0 else snap.labels[label], frames, idle)
    if with_process:
        key += (snap.thread_processes[thread],)
    return key, (hits, gil, cpu)


@pytest.fixture(scope="module")
def prof():
    return _profile_with_labels_and_idle()


@pytest.fixture
def dirfd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_round_trip_keeps_rows_labels_idle_flags_and_threads(prof, dirfd, tmp_path):
    original = prof.database.snapshot()
    meta = {"pid": 4242, "command": "python app.py", "rate": 998.5, "final": True, "dropped": {"torn": 3}}
    timings = [("index", 10, 0.5, 0.2, 1, [(3, 4), (200, 6)]), ("caf\u00e9", 1, 0.001, 0.001, 0, [(5, 1)])]
    size = _engine.share_publish(dirfd, "p4242-1.oxp", prof.database, meta, timings, BIG)
    assert size == os.path.getsize(tmp_path / "p4242-1.oxp")
    assert stat.S_IMODE(os.stat(tmp_path / "p4242-1.oxp").st_mode) == 0o600
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]

    read_meta, read_timings, total = _engine.share_read(dirfd, "p4242-1.oxp", BIG)
    assert read_meta == {"pid": 4242, "command": "python app.py", "rate": 998.5, "final": True,
                         "dropped.torn": 3}
    assert read_timings == timings
    assert total == original.total_hits > 100

    merged, sources, skipped = _engine.share_merge(dirfd, ["p4242-1.oxp"], None, BIG, None, False)
    assert skipped == [] and [s[0] for s in sources] == ["p4242-1.oxp"] and sources[0][3] == total
    assert merged.total_hits == original.total_hits
    before = dict(_row_key(original, r) for r in original.rows)
    after = dict(_row_key(merged, r) for r in merged.rows)
    assert after == before
    assert set(merged.labels) == {"endpoint-a", "endpoint-b"}
    assert any(r[6] for r in merged.rows), "the idle thread's samples keep their idle flag"
    assert sorted(map(str, (t[:3] for t in merged.threads))) == sorted(map(str, original.threads))
    assert set(merged.thread_processes) == {0}


def test_merging_processes_adds_them_up_and_keeps_them_apart(prof, dirfd):
    original = prof.database.snapshot()
    for pid in (101, 102, 103):
        _engine.share_publish(dirfd, "p%d-1.oxp" % pid, prof.database, {"pid": pid}, None, BIG)
    merged, sources, skipped = _engine.share_merge(dirfd, ["p101-1.oxp", "p102-1.oxp", "p103-1.oxp"],
                                                   (original, 100), BIG, None, True)
    assert not skipped and len(sources) == 3
    assert merged.total_hits == 4 * original.total_hits
    # Same threads (forked workers share idents), four processes: kept apart.
    assert len(merged.threads) == 4 * len(original.threads)
    assert sorted(set(merged.thread_processes)) == [0, 1, 2, 3]
    names = {t[2] for t in merged.threads}
    for pid in (100, 101, 102, 103):
        assert "sleepy (pid %d)" % pid in names
    # Per process, exactly the original rows.
    before = dict(_row_key(original, r) for r in original.rows)
    for process in range(4):
        rows = [r for r in merged.rows if merged.thread_processes[r[0]] == process]
        assert dict(_row_key(merged, r) for r in rows) == before
    # Functions and stacks are shared, not repeated.
    assert len(merged.functions) == len(original.functions)
    assert merged.nstacks == original.nstacks


def test_files_of_another_reset_or_server_are_left_out(prof, dirfd):
    _engine.share_publish(dirfd, "p1-1.oxp", prof.database, {"pid": 1, "reset_id": "r1"}, None, BIG)
    _engine.share_publish(dirfd, "p2-1.oxp", prof.database, {"pid": 2, "reset_id": "r2"}, None, BIG)
    _engine.share_publish(dirfd, "p3-1.oxp", prof.database, {"pid": 3}, None, BIG)
    merged, sources, skipped = _engine.share_merge(dirfd, ["p1-1.oxp", "p2-1.oxp", "p3-1.oxp"], None, BIG,
                                                   {"reset_id": "r2"}, True)
    assert [s[0] for s in sources] == ["p2-1.oxp"]
    assert sorted(n for n, why in skipped) == ["p1-1.oxp", "p3-1.oxp"]
    assert all("stale" in why for n, why in skipped)


def test_every_truncation_is_refused_with_a_reason(prof):
    data = _engine._share_encode({"pid": 1, "command": "x"}, prof.database,
                                 [("ep", 2, 0.1, 0.1, 0, [(1, 2)])])
    assert _engine._share_check(data)[2] == prof.database.snapshot().total_hits
    step = max(1, len(data) // 1500)
    for cut in list(range(0, len(data), step)) + [len(data) - 1]:
        with pytest.raises(ValueError) as info:
            _engine._share_check(data[:cut])
        assert str(info.value) in ("truncated", "not an ox_profile shared file"), (cut, info.value)
    with pytest.raises(ValueError, match="sizes do not match"):
        _engine._share_check(data + b"\0" * 8)


def test_corrupted_bytes_fail_the_checksum(prof):
    data = _engine._share_encode({"pid": 1}, prof.database)
    step = max(1, len(data) // 2000)
    for i in range(0, len(data), step):
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises(ValueError) as info:
            _engine._share_check(bytes(bad))
        assert str(info.value) in ("checksum mismatch", "not an ox_profile shared file",
                                   "written by another format version", "sizes do not match",
                                   "truncated"), (i, info.value)


def test_structural_errors_are_named(prof):
    data = _engine._share_encode({"pid": 1}, prof.database)
    # Another version.
    other = data[:8] + struct.pack("<I", 2) + data[12:]
    with pytest.raises(ValueError, match="another format version"):
        _engine._share_check(_crc_fixed(other))
    # The META section (first after the header) twice, by growing the
    # section count and appending a copy of it.
    meta_len = struct.unpack_from("<Q", data, 40 + 8)[0]
    meta = data[40:40 + 16 + meta_len + ((8 - meta_len % 8) % 8)]
    nsec = struct.unpack_from("<I", data, 28)[0]
    doubled = bytearray(data + meta)
    struct.pack_into("<I", doubled, 28, nsec + 1)
    struct.pack_into("<Q", doubled, 16, len(doubled) - 40)
    with pytest.raises(ValueError, match="twice"):
        _engine._share_check(_crc_fixed(bytes(doubled)))
    # An unknown section (a later version's) is skipped.
    extra = struct.pack("<IIQ", 0x5a5a5a5a, 0, 8) + b"12345678"
    grown = bytearray(data + extra)
    struct.pack_into("<I", grown, 28, nsec + 1)
    struct.pack_into("<Q", grown, 16, len(grown) - 40)
    assert _engine._share_check(_crc_fixed(bytes(grown)))[2] == _engine._share_check(data)[2]
    # Bytes after the last section.
    trailing = bytearray(data + b"\0" * 16)
    struct.pack_into("<Q", trailing, 16, len(trailing) - 40)
    with pytest.raises(ValueError, match="after the last section"):
        _engine._share_check(_crc_fixed(bytes(trailing)))


def test_fuzzed_files_with_valid_checksums_never_crash_the_reader():
    """Mutations that keep the checksum right reach every bound check of the
    decoder: each file is refused with a reason or, when still coherent,
    merged with its hits accounted for.  In a child process, so that a crash
    is reported as one."""
    code = r'''
        import random, struct, sys, threading, time, zlib
        import ox_profile
        from ox_profile import _engine

        def fixed(data):
            zeroed = data[:24] + b"\0\0\0\0" + data[28:]
            return data[:24] + struct.pack("<I", zlib.crc32(zeroed) & 0xffffffff) + data[28:]

        prof = ox_profile.Profiler(interval=0.0005)
        with prof:
            with ox_profile.label("a"):
                end = time.perf_counter() + 0.2
                while time.perf_counter() < end:
                    pass
        base = _engine._share_encode({"pid": 7, "s": "text"}, prof.database,
                                     [("ep", 3, 0.5, 0.3, 1, [(4, 2), (9, 1)])])
        rng = random.Random(12)
        specials = [0, 1, 2, 7, 8, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xfffffffe, 0xffffffff, len(base)]
        refused = accepted = 0
        reasons = set()
        for i in range(int(sys.argv[1])):
            data = bytearray(base)
            for _ in range(rng.choice((1, 1, 2, 4))):
                how = rng.random()
                at = rng.randrange(40, len(data) - 4)
                if how < 0.4:
                    data[at] = rng.randrange(256)
                elif how < 0.8:
                    struct.pack_into("<I", data, at - at % 4, rng.choice(specials))
                elif how < 0.9:
                    del data[at:at + rng.randrange(1, 64)]
                else:
                    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
            if rng.random() < 0.5:
                struct.pack_into("<Q", data, 16, len(data) - 40)
            try:
                meta, timings, total, rows, hits = _engine._share_check(fixed(bytes(data)))
            except ValueError as exc:
                refused += 1
                reasons.add(str(exc))
                continue
            accepted += 1
            assert rows >= 0 and hits >= 0
        print("refused", refused, "accepted", accepted, "reasons", len(reasons))
        print("\n".join(sorted(reasons)))
    '''
    proc = run_python(code, args=["6000"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    first = proc.stdout.splitlines()[0].split()
    refused, accepted, nreasons = int(first[1]), int(first[3]), int(first[5])
    assert refused + accepted == 6000 and refused > 1000 and nreasons >= 8, proc.stdout


def test_file_names_cannot_leave_the_directory(prof, dirfd):
    for name in ("../escape.oxp", ".hidden", "a/b", "", "x" * 300):
        with pytest.raises(ValueError):
            _engine.share_publish(dirfd, name, None, {}, None, BIG)
        with pytest.raises(ValueError):
            _engine.share_read(dirfd, name, BIG)


def test_symlinks_fifos_and_big_files_are_refused(prof, dirfd, tmp_path):
    secret = tmp_path / "elsewhere"
    secret.write_bytes(_engine._share_encode({"pid": 9}, prof.database))
    os.symlink(secret, tmp_path / "p9-1.oxp")
    with pytest.raises(ValueError, match="symbolic link"):
        _engine.share_read(dirfd, "p9-1.oxp", BIG)
    merged, sources, skipped = _engine.share_merge(dirfd, ["p9-1.oxp"], None, BIG, None, False)
    assert sources == [] and skipped == [("p9-1.oxp", "a symbolic link")]
    # Publishing replaces the link itself, never writes through it.
    before = secret.read_bytes()
    _engine.share_publish(dirfd, "p9-1.oxp", None, {"pid": 10}, None, BIG)
    assert secret.read_bytes() == before and not os.path.islink(tmp_path / "p9-1.oxp")
    os.mkfifo(tmp_path / "p11-1.oxp")
    with pytest.raises(ValueError, match="not a regular file"):
        _engine.share_read(dirfd, "p11-1.oxp", BIG)
    _engine.share_publish(dirfd, "p12-1.oxp", prof.database, {"pid": 12}, None, BIG)
    size = os.path.getsize(tmp_path / "p12-1.oxp")
    with pytest.raises(ValueError, match="size limit"):
        _engine.share_read(dirfd, "p12-1.oxp", size - 1)
    with pytest.raises(FileNotFoundError):
        _engine.share_read(dirfd, "p13-1.oxp", BIG)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_files_of_another_user_are_refused(prof, dirfd, tmp_path):
    _engine.share_publish(dirfd, "p14-1.oxp", prof.database, {"pid": 14}, None, BIG)
    os.chown(tmp_path / "p14-1.oxp", 65534, 65534)
    with pytest.raises(ValueError, match="another user"):
        _engine.share_read(dirfd, "p14-1.oxp", BIG)


def test_a_file_is_no_bigger_than_the_memory_cap(dirfd, tmp_path):
    """Deep, distinct stacks until the database overflows its cap: the file
    stays under the cap, and a publication over the limit writes nothing."""
    cap = 256 * 1024
    prof = ox_profile.Profiler(interval=0.0002, max_memory=cap)

    def recurse(n: int, k: int) -> None:
        if n == 0:
            spin(0.0005)
            return
        (recurse if (k >> n) & 1 else recurse2)(n - 1, k)

    def recurse2(n: int, k: int) -> None:
        recurse(n, k) if n == 0 else (recurse if (k >> n) & 1 else recurse2)(n - 1, k)

    with prof:
        deadline = time.perf_counter() + 20
        k = 0
        while prof.stats()["overflow_samples"] == 0 and time.perf_counter() < deadline:
            recurse(18, k)
            k += 1
    stats = prof.stats()
    assert stats["overflow_samples"] > 0 and stats["memory_bytes"] <= cap
    size = _engine.share_publish(dirfd, "p1-1.oxp", prof.database, {"pid": 1}, None, BIG)
    assert size <= stats["memory_bytes"] <= cap, (size, stats["memory_bytes"])
    merged, sources, _ = _engine.share_merge(dirfd, ["p1-1.oxp"], None, BIG, None, False)
    assert merged.total_hits == prof.database.snapshot().total_hits
    assert merged.overflow_hits == stats["overflow_samples"]
    with pytest.raises(ValueError, match="over the limit"):
        _engine.share_publish(dirfd, "p1-1.oxp", prof.database, {"pid": 2}, None, size - 1)
    assert _engine.share_read(dirfd, "p1-1.oxp", BIG)[0]["pid"] == 1  # the last good file stays
