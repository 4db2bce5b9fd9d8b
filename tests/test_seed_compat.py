"""The original ox_profile's README snippets and behaviour, verbatim."""

from __future__ import annotations

import doctest
import re
import threading
import time

import pytest

from conftest import shared_file, spin

from ox_profile.core import launchers, recording, sampling

SEED = shared_file("seed/ox_profile-0.2.2-PKG-INFO.txt")  # at import: the whole module needs it


def seed_snippets() -> list:
    """The ``>>>`` blocks of the seed README, dedented."""
    text = SEED.read_text()
    blocks, current = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">>>") or (stripped.startswith("...") and current):
            current.append(stripped)
        elif current:
            blocks.append("\n".join(current) + "\n")
            current = []
    if current:
        blocks.append("\n".join(current) + "\n")
    return blocks


def some_functions() -> None:
    """What the README's ``<call some functions>`` stands for."""
    spin(0.3)


@pytest.mark.parametrize("index", range(len(seed_snippets())))
def test_seed_readme_snippet_runs_as_doctest(index: int) -> None:
    source = seed_snippets()[index]
    # The README's one placeholder line is not Python: it stands for the
    # user's own code, which we supply.  Everything else runs unchanged.
    source = source.replace(">>> <call some functions>", ">>> some_functions()")
    # Doctest compares output: the README shows none, so accept any.
    parser = doctest.DocTestParser()
    examples = parser.get_examples(source)
    assert examples, "no examples in snippet %d" % index
    for example in examples:
        example.options[doctest.ELLIPSIS] = True
        example.want = "...\n" if example.source.startswith(("print", "foo()")) else example.want
    test = doctest.DocTest(examples, {"some_functions": some_functions}, "seed[%d]" % index, None, 0, None)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0, "seed snippet %d failed:\n%s" % (index, source)


def test_seed_snippets_were_found() -> None:
    blocks = seed_snippets()
    assert len(blocks) == 2
    assert "launcher.sampler.my_db.query()" in blocks[0]
    assert "sampling.Sampler(recording.CountingRecorder())" in blocks[1]


def test_our_modules_doctests() -> None:
    for module in (launchers, sampling):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, module.__name__


def one_second_running_function() -> None:
    time.sleep(1)


def three_seconds_running_function() -> None:
    time.sleep(2)


def test_launcher_finds_sleeping_functions_like_the_original() -> None:
    # The original's own integration test, shortened.
    launcher = launchers.SimpleLauncher(interval=.001)
    launcher.start()
    launcher.unpause()
    one_second_running_function()
    three_seconds_running_function()
    assert launcher.is_alive()
    launcher.cancel()
    query, total_records = launcher.sampler.my_db.query(max_records=None)
    assert total_records > 0
    hits = {r.name: r.hits for r in query}
    one = hits["one_second_running_function(test_seed_compat)"]
    three = hits["three_seconds_running_function(test_seed_compat)"]
    assert 0 < one < three
    assert 1.4 < three / one < 2.8


def test_launcher_lifecycle_and_defaults() -> None:
    launcher = launchers.SimpleLauncher()
    assert launcher.interval == .001 and launcher.daemon and launcher.isDaemon()
    assert launcher.is_paused() and not launcher.is_alive()
    assert launcher.tracker.stats() == "No samples taken"
    launcher.start()
    assert launcher.is_alive() and launcher.is_paused()
    time.sleep(0.05)
    assert launcher.sampler.my_db.query()[1] == 0  # paused: nothing sampled
    launcher.unpause()
    spin(0.3)
    launcher.pause()
    assert launcher.is_paused()
    stats = launcher.tracker.stats()
    nogil = launcher.profiler.stats()["backend"] == "nogil"
    # The GIL-holding capture waits for the GIL, so its interval is longer.
    # (at most the interpreter's 5 ms switch interval, with room for a busy machine).
    if nogil:
        assert abs(stats["mean"] - 0.001) < 0.0005
    else:
        assert 0.0009 <= stats["mean"] < 0.011
    assert 0 < stats["stdev"] < 0.01
    n = launcher.sampler.my_db.snapshot().total_samples
    time.sleep(0.1)
    assert launcher.sampler.my_db.snapshot().total_samples == n  # paused
    launcher.set_interval(0.002)
    launcher.unpause()
    spin(0.3)
    mean = launcher.tracker.stats()["mean"]
    assert abs(mean - 0.002) < 0.001 if nogil else 0.0019 <= mean < 0.012
    with pytest.raises(RuntimeError):
        launcher.start()
    launcher.cancel()
    assert not launcher.is_alive()
    assert launcher.query()[0] and "Profiling results" in launcher.show()


def test_launch_classmethod_starts_unpaused() -> None:
    launcher = launchers.SimpleLauncher.launch()
    try:
        assert launcher.is_alive() and not launcher.is_paused()
        spin(0.1)
        assert launcher.query()[0]
    finally:
        launcher.cancel()


def test_stop_flag_cancels_like_the_original() -> None:
    flag = threading.Event()
    launcher = launchers.SimpleLauncher(stop_flag=flag)
    launcher.start()
    launcher.unpause()
    flag.set()
    deadline = time.time() + 5
    while launcher.is_alive() and time.time() < deadline:
        time.sleep(0.01)
    assert not launcher.is_alive()


def test_sampler_run_records_all_threads_synchronously() -> None:
    sampler = sampling.Sampler(recording.CountingRecorder())
    ready, stop = threading.Event(), threading.Event()

    def worker_waits() -> None:
        ready.set()
        stop.wait()

    t = threading.Thread(target=worker_waits)
    t.start()
    ready.wait()
    try:
        def foo() -> str:
            sampler.run()
            return "done"
        assert foo() == "done"
        sampler()  # calling it is the same as run()
    finally:
        stop.set()
        t.join()
    names = {r.name: r.hits for r in sampler.my_db.query(max_records=None)[0]}
    assert names["foo(test_seed_compat)"] == 1
    assert names["worker_waits(test_seed_compat)"] == 2


def test_query_filter_limit_and_record_format() -> None:
    recorder = recording.CountingRecorder()
    sampler = sampling.Sampler(recorder)

    def alpha() -> None:
        sampler.run()

    def beta() -> None:
        alpha()
        sampler.run()

    beta()
    records, count = recorder.query(re_filter="^(alpha|beta)", max_records=10)
    assert [(r.name, r.hits) for r in records] == [("beta(test_seed_compat)", 2), ("alpha(test_seed_compat)", 1)]
    assert count >= 2
    assert repr(records[0]) == "ProfileRecord(name=beta(test_seed_compat), hits=2)"
    assert len(recorder.query(max_records=1)[0]) == 1
    text = recorder.show(limit=2)
    assert text.startswith("Profiling results: (top 2/") and "| Function" in text and "|     Hits |" in text


def test_recursion_counts_once_per_sample() -> None:
    # The original counted each frame: a 10-deep recursion got 10 hits per
    # sample.  We count the function once per sample.
    recorder = recording.CountingRecorder()
    sampler = sampling.Sampler(recorder)

    def down(n: int) -> None:
        if n == 0:
            sampler.run()
        else:
            down(n - 1)

    down(10)
    hits = {r.name: r.hits for r in recorder.query(max_records=None)[0]}
    assert hits["down(test_seed_compat)"] == 1


def test_custom_recorder_gets_measurements() -> None:
    class Listing:
        def __init__(self) -> None:
            self.names = []

        def record(self, measurement) -> None:
            self.names.append(measurement.name)

    rec = Listing()
    sampling.Sampler(rec).run()
    assert any("test_custom_recorder_gets_measurements(test_seed_compat);run(ox_profile.core.sampling)" in n for n in rec.names)
    assert all(re.match(r"^[^;]+\(.*\)(;[^;]+\(.*\))*$", n) for n in rec.names)
