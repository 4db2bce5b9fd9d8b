"""Strings from the program that cannot be encoded as UTF-8 (lone surrogates,
as ``os.fsdecode`` makes of undecodable bytes) never fail a snapshot, an
export, a page or a CLI run: they are shown escaped as Python's
``backslashreplace`` does (``job-\\udcff``).  Thread names and labels with
both backends; function and file names with the GIL-holding capture (the
GIL-free capture reads them itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

import ox_profile
from ox_profile import _engine, export
from conftest import spin

THREAD = os.fsdecode(b"job-\xff")         # 'job-\udcff'
LABEL = os.fsdecode(b"lab-\xfd")          # 'lab-\udcfd'
FUNC = os.fsdecode(b"fn-\xfe")            # 'fn-\udcfe'
FILE = os.fsdecode(b"/srv/app/f-\xfc.py")
SHOWN_THREAD = "job-\\udcff"
SHOWN_LABEL = "lab-\\udcfd"


def _with_odd_names(seconds: float) -> None:
    spin(seconds)


_with_odd_names.__code__ = _with_odd_names.__code__.replace(co_name=FUNC, co_qualname=FUNC, co_filename=FILE)


def _profile(backend: str) -> ox_profile.Profile:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name=THREAD, daemon=True)
    worker.start()
    try:
        with ox_profile.Profiler(interval=0.001, backend=backend) as prof:
            with ox_profile.label(LABEL):
                _with_odd_names(0.3)
        return prof.snapshot()
    finally:
        release.set()
        worker.join()


def test_label_with_a_lone_surrogate_is_kept_escaped():
    with ox_profile.label(LABEL):
        assert ox_profile.get_label() == SHOWN_LABEL
    assert ox_profile.get_label() is None


def test_thread_name_and_label_never_fail_a_snapshot(backend, tmp_path):
    profile = _profile(backend)
    assert SHOWN_THREAD in [t.name for t in profile.threads]
    assert profile.labels == [SHOWN_LABEL]
    assert profile.filter(labels=[SHOWN_LABEL]).total_samples > 0
    for fmt, module in export.FORMATS.items():
        path = tmp_path / ("p" + module.extension)
        export.save(profile, path, fmt)
        assert path.stat().st_size > 0
    speedscope = json.loads((tmp_path / "p.speedscope.json").read_text())
    assert SHOWN_THREAD in [p["name"].split(" (")[0] for p in speedscope["profiles"]]


def test_function_and_file_names_are_escaped_by_the_gil_capture(tmp_path):
    profile = _profile("gil")
    names = {f.qualname: f.filename for f in profile.functions}
    assert names.get("fn-\\udcfe") == "/srv/app/f-\\udcfc.py", sorted(names)
    text = profile.render("text", limit=None)
    assert "fn-\\udcfe" in text
    assert "fn-\\udcfe" in profile.render("collapsed")
    profile.save(tmp_path / "p.html")


def test_snapshot_from_raw_tuples_escapes_too():
    functions = [(FUNC, FUNC, "mod", FILE, 1)]
    snap = _engine.Snapshot.from_raw(functions, [(1, 2, THREAD)], [LABEL], [((0, 1),)], [(0, 0, 0, 5, 0, 0)])
    profile = ox_profile.Profile(snap, {})
    assert profile.functions[0].name == "fn-\\udcfe"
    assert profile.threads[0].name == SHOWN_THREAD and profile.labels == [SHOWN_LABEL]
    assert "fn-\\udcfe" in profile.folded([FUNC])


CLI_PROGRAM = r'''
import os, threading, time
release = threading.Event()
threading.Thread(target=release.wait, name=os.fsdecode(b"job-\xff"), daemon=True).start()
end = time.perf_counter() + 0.3
while time.perf_counter() < end:
    pass
release.set()
'''


@pytest.mark.parametrize("script_name", [b"odd_thread.py", b"odd-\xff.py"], ids=["thread", "thread+file"])
def test_cli_writes_the_profile(tmp_path, script_name):
    script = os.path.join(os.fsencode(tmp_path), script_name)
    with open(script, "w") as fh:
        fh.write(CLI_PROGRAM)
    for name in ("p.speedscope.json", "p.html", "p.txt"):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(out), script],
                              capture_output=True, timeout=120)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 0, err
        assert out.stat().st_size > 0 and "instead" not in err, err
    doc = json.loads((tmp_path / "p.speedscope.json").read_text())
    assert any(p["name"].startswith(SHOWN_THREAD) for p in doc["profiles"]), [p["name"] for p in doc["profiles"]]


def test_flask_pages_show_the_name_escaped():
    from ox_profile.ui.flask import OX_PROF_BP
    from test_flask import P, client_as, live_thread, make_app, func_alpha
    app = make_app()
    admin = client_as(app, "admin")
    OX_PROF_BP.pause()
    OX_PROF_BP.reset()
    try:
        OX_PROF_BP.unpause()
        with live_thread(func_alpha, name=THREAD):
            with ox_profile.label(LABEL):
                spin(0.1)
            OX_PROF_BP.pause()
            for _ in range(2):  # and again after a reset
                page = admin.get(P + "/status")
                assert page.status_code == 200
                assert SHOWN_THREAD in page.get_data(as_text=True)
                status = admin.get(P + "/status.json")
                assert status.status_code == 200
                assert SHOWN_THREAD in [t["name"] for t in status.json["threads"]]
                for fmt in ("collapsed", "speedscope", "pprof", "html", "text"):
                    assert admin.get(P + "/download/" + fmt).status_code == 200, fmt
                assert admin.get(P + "/flame.json").status_code == 200
                OX_PROF_BP.reset()
                OX_PROF_BP.unpause()
                spin(0.05)
                OX_PROF_BP.pause()
    finally:
        OX_PROF_BP.pause()
        OX_PROF_BP.reset()
