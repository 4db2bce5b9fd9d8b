"""Each wall-mode sample says whether its thread ran since the previous tick:
threads that wait (sleep, a lock, I/O) are idle, threads that compute are
not, even in C code that released the GIL."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

import ox_profile
from ox_profile import _engine
from conftest import BACKENDS, spin


cpu_share: dict = {}


def _run_mixed(backend: str, mode: str = "wall") -> "ox_profile.Profile":
    stop = threading.Event()
    lock = threading.Lock()
    lock.acquire()
    data = b"x" * (8 << 20)

    def poller() -> None:
        while not stop.is_set():
            time.sleep(0.02)

    def hashing() -> None:  # C work with the GIL released
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        while not stop.is_set():
            hashlib.sha256(data).digest()
        # The share of the time it actually had a CPU (on a loaded machine,
        # less than all of it).
        cpu_share["hashing"] = (time.thread_time() - cpu0) / (time.perf_counter() - wall0)

    threads = [threading.Thread(target=poller, name="poller"),
               threading.Thread(target=lock.acquire, name="blocked"),
               threading.Thread(target=hashing, name="hashing")]
    with ox_profile.Profiler(interval=0.001, backend=backend, mode=mode) as prof:
        for t in threads:
            t.start()
        spin(0.6)
        stop.set()
        lock.release()
        for t in threads:
            t.join()
    return prof.snapshot()


def _idle_share(profile: "ox_profile.Profile", name: str) -> float:
    sub = profile.filter(threads=[name])
    assert sub.total_samples > 30, (name, sub.total_samples)
    return sub.idle_samples / sub.total_samples


@pytest.mark.parametrize("backend", BACKENDS)
def test_waiting_threads_are_idle_and_working_ones_are_not(backend: str) -> None:
    import threading as _t
    profile = _run_mixed(backend)
    # (The poller wakes every 20 ms, and then waits for the GIL, waking up
    # every switch interval to ask for it: some ticks see it run; the gil
    # backend's ticks are a switch interval apart, so more of them do.)
    assert _idle_share(profile, "poller") > (0.5 if backend == "nogil" else 0.2)
    assert _idle_share(profile, "blocked") > 0.9
    # Computing in C without the GIL is running, not idle: at least as many
    # of its ticks are active as the share of the time it had a CPU (less
    # than all of it when the machine is loaded: a thread waiting for a CPU
    # does not run).
    active = 1 - _idle_share(profile, "hashing")
    loaded = cpu_share["hashing"] < 0.5  # too loaded to tell: said at the end
    if not loaded:
        assert active >= min(0.9, cpu_share["hashing"]) - 0.1, (active, cpu_share["hashing"])
    if backend == "nogil":
        # The main thread computes; it is idle only in ticks it spent
        # waiting for the GIL the hashing thread took.
        main = profile.filter(threads=[_t.main_thread().ident])
        assert main.idle_samples <= 0.25 * main.total_samples
    # The stack samples say it too, and the counts agree.
    idle_rows = sum(s.hits for s in profile.stacks() if s.idle)
    assert idle_rows == profile.idle_samples == profile.stats["idle_samples"]
    if loaded:
        pytest.skip("the rest passed; the hashing thread had a CPU only %.0f%% of the time: too loaded "
                    "to check that computing without the GIL counts as running" % (100 * cpu_share["hashing"]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_idle_samples_can_be_left_out(backend: str) -> None:
    profile = _run_mixed(backend)
    active = profile.filter(include_idle=False)
    assert active.idle_samples == 0 and active.idle_hidden == profile.idle_samples
    assert active.total_samples == profile.total_samples - profile.idle_samples
    assert all(not s.idle for s in active.stacks())
    # A thread that only waited is gone from the active view; one that worked stays.
    assert active.filter(threads=["blocked"]).total_samples <= 0.1 * profile.filter(threads=["blocked"]).total_samples
    assert active.filter(threads=["hashing"]).total_samples > 0
    # Chained filters keep the choice, and can bring the idle samples back.
    assert active.filter(threads=["poller"]).include_idle is False
    assert active.filter(include_idle=True).total_samples == profile.total_samples


def test_cpu_mode_records_no_idle_samples() -> None:
    profile = _run_mixed(BACKENDS[-1], mode="cpu")
    assert profile.idle_samples == 0


def test_raw_rows_carry_the_idle_flag() -> None:
    funcs = [("f", "f", "m", "m.py", 1)]
    snap = _engine.Snapshot.from_raw(funcs, [(1, 1, "t")], [], [((0, 2),)],
                                     [(0, -1, 0, 5, 0, 0, True), (0, -1, 0, 3, 0, 0)])
    assert sorted(row[3:] for row in snap.rows) == [(3, 0, 0, False), (5, 0, 0, True)]
    profile = ox_profile.Profile(snap)
    assert profile.total_samples == 8 and profile.idle_samples == 5
    assert profile.filter(include_idle=False).total_samples == 3
