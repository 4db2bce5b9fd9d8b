"""The readers the GIL-free capture reads memory with.

``direct`` copies memory on the sampler thread under a SIGSEGV/SIGBUS guard;
``vm`` and ``procmem`` go through system calls.  Each must return what is
there, fail cleanly on what is not mapped, and leave every fault that is not
its own to whoever would have handled it without ox_profile.
"""

from __future__ import annotations

import signal

import pytest

from conftest import UNDER_ASAN, run_python
from ox_profile import _engine

pytestmark = pytest.mark.skipif(not _engine.BUILD_INFO["nogil_available"],
                                reason="this build has no GIL-free capture")

READERS = ["direct", "vm", "procmem"]  # under AddressSanitizer (make test-asan) too

# Reads live, freed and impossible memory through the engine's reader, then
# profiles a function and checks the sampler found it.
READ_AND_PROFILE = """
    import ctypes, mmap, time, ox_profile
    from ox_profile import _engine
    buf = ctypes.create_string_buffer(b"ox_profile reads this")
    assert _engine._saferead(ctypes.addressof(buf), 21) == b"ox_profile reads this"
    m = mmap.mmap(-1, 8192)
    m.write(b"mapped")
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert _engine._saferead(addr, 6) == b"mapped"
    faults = _engine._read_faults()
    m.close()  # unmapped: reading it now would crash a plain copy
    for bad in (addr, addr + 4095, 16, 0xdead00000000, 0xffff800000000000):
        assert _engine._saferead(bad, 8) is None, hex(bad)
    caught = _engine._read_faults() - faults

    def marked_work():
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    with ox_profile.Profiler(interval=0.001) as prof:
        marked_work()
    stats = prof.stats()
    names = [s.function.name for s in prof.snapshot().top()]
    print("reader", stats["reader"])
    print("caught", caught)
    print("found", "marked_work" in names, stats["samples"])
"""


@pytest.mark.parametrize("reader", READERS)
def test_each_reader_reads_mapped_memory_and_fails_cleanly_on_unmapped(reader: str) -> None:
    proc = run_python(READ_AND_PROFILE, env={"OX_PROFILE_READER": reader})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    expected = {"direct": "direct", "vm": "process_vm_readv", "procmem": "/proc/self/mem"}[reader]
    assert "reader %s\n" % expected in out, out
    assert "found True" in out, out
    caught = int(out.split("caught ")[1].split()[0])
    if reader == "direct":
        assert caught >= 4  # the unmapped and kernel addresses faulted and were caught
    else:
        assert caught == 0  # system calls report bad addresses without a fault


def test_the_default_reader_is_the_guarded_copy() -> None:
    """Also in the AddressSanitizer build, whose run must cover it."""
    proc = run_python(READ_AND_PROFILE, env={"OX_PROFILE_READER": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reader direct\n" in proc.stdout and "found True" in proc.stdout, proc.stdout
    if UNDER_ASAN:
        print("AddressSanitizer build: the direct reader ran (%s)" % proc.stdout.split("caught ")[1].split()[0]
              + " faults caught)")


@pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer maps its own memory into the freed range")
def test_a_read_that_runs_off_a_mapping_fails_as_a_whole() -> None:
    code = """
        import ctypes, mmap
        from ox_profile import _engine
        m = mmap.mmap(-1, 8192)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        m.close()
        # Map one page back where the first page was, leave the second unmapped.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
        got = libc.mmap(base, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        if got != base:
            print("skip: could not map the page back"); raise SystemExit(0)
        ctypes.memset(base, 0x41, 4096)
        print(_engine._saferead(base + 4000, 96) == b"A" * 96)
        print(_engine._saferead(base + 4000, 200))
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if proc.stdout.startswith("skip"):
        pytest.skip(proc.stdout.strip())
    assert proc.stdout.split() == ["True", "None"]


# The profiled program dereferences NULL while the sampler runs.
CRASH = """
    import ctypes, faulthandler, sys, time, ox_profile
    if "before" in sys.argv:
        faulthandler.enable()
    prof = ox_profile.Profiler(interval=0.001)
    prof.start()
    time.sleep(0.05)
    if "after" in sys.argv:
        faulthandler.enable()
    print("reader", prof.stats()["reader"], flush=True)
    ctypes.string_at(0)
    print("not reached", flush=True)
"""


@pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer reports a real fault itself and aborts")
@pytest.mark.parametrize("faulthandler_at", ["never", "before", "after"])
def test_a_real_crash_of_the_program_still_crashes_as_without_us(faulthandler_at: str) -> None:
    """Our handler must not swallow the program's own faults: the process
    dies of SIGSEGV, and faulthandler (enabled before or after the profiler
    started) still prints its traceback."""
    proc = run_python(CRASH, args=[faulthandler_at])
    assert proc.returncode == -signal.SIGSEGV, proc.stdout + proc.stderr
    assert "not reached" not in proc.stdout
    if faulthandler_at == "never":
        assert "Fatal Python error" not in proc.stderr
    else:
        assert "Fatal Python error: Segmentation fault" in proc.stderr, proc.stderr
        assert "most recent call first" in proc.stderr and "string_at" in proc.stderr, proc.stderr
    if faulthandler_at == "after":
        # faulthandler replaced our handler: the capture reads through system calls.
        assert "fault handler replaced" in proc.stdout, proc.stdout


@pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer reports a real fault itself and aborts")
def test_signals_sent_to_the_program_reach_its_own_handler_or_default_action() -> None:
    code = """
        import os, signal, sys, time, ox_profile
        got = []
        if sys.argv[1] == "handled":
            signal.signal(signal.SIGSEGV, lambda sig, frame: got.append(sig))
        with ox_profile.Profiler(interval=0.001) as prof:
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(0.2)
            samples = prof.stats()["samples"]
        print("handled", got, samples > 0, flush=True)
    """
    handled = run_python(code, args=["handled"])
    assert handled.returncode == 0, handled.stdout + handled.stderr
    assert "handled [%d] True" % signal.SIGSEGV in handled.stdout
    default = run_python(code, args=["default"])
    assert default.returncode == -signal.SIGSEGV, default.stdout + default.stderr


def test_more_samplers_than_guards_fall_back_to_system_calls() -> None:
    """Each sampler thread takes one of 64 guards; the rest read through
    process_vm_readv, and every sampler still records."""
    code = """
        import time, ox_profile
        profs = [ox_profile.Profiler(interval=0.005) for _ in range(70)]
        for p in profs:
            p.start()
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            pass
        for p in profs:
            p.stop()
        print(sum(p.stats()["samples"] > 0 for p in profs))
        print(sum(p.stats()["reader"] == "direct" for p in profs),
              sum(p.stats()["reader"] == "process_vm_readv" for p in profs))
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["70", "64", "6"]
