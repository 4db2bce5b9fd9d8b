"""What a run cannot see is said where people read the profile, and the
profiler's own frames never appear in it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import ox_profile
from ox_profile import _engine
from ox_profile.caveats import sampling_caveat
from conftest import BACKENDS, run_python, spin

NOGIL = _engine.BUILD_INFO["nogil_available"]


def test_a_gil_backend_run_says_what_it_misses_and_how_to_do_better() -> None:
    with ox_profile.Profiler(interval=0.001, backend="gil") as prof:
        spin(0.2)
    warning = prof.stats()["warning"]
    assert "C calls that hold the GIL" in warning and "charged to whatever Python code runs next" in warning
    if NOGIL:
        assert "leave the backend on automatic" in warning
    else:
        assert "not available here" in warning and _engine.BUILD_INFO["nogil_note"] in warning
    assert warning.count(". ") == 0 and warning.endswith(".")  # one sentence
    assert prof.snapshot().stats["warning"] == warning


@pytest.mark.skipif(not NOGIL, reason="needs the GIL-free capture")
def test_a_gil_free_run_at_full_rate_has_no_warning() -> None:
    with ox_profile.Profiler(interval=0.002, backend="nogil") as prof:
        spin(0.3)
    assert "warning" not in prof.stats()


def test_a_starved_sampler_is_reported() -> None:
    stats = {"backend": "nogil", "interval": 0.001, "ticks": 500, "rate_hz": 300.0}
    said = sampling_caveat(stats)
    assert said.startswith("Only 300 Hz of the 1000 Hz requested were achieved")
    assert sampling_caveat(dict(stats, rate_hz=600.0)) is None
    assert sampling_caveat(dict(stats, ticks=5)) is None  # too few ticks to tell
    gil = sampling_caveat(dict(stats, backend="gil"))
    assert "GIL-holding backend (only 300 Hz of the 1000 Hz requested were achieved)" in gil


def test_the_cli_header_and_the_html_report_carry_it(tmp_path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import time\nend = time.time() + 0.3\nwhile time.time() < end: pass\n")
    out = tmp_path / "out.html"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "--backend", "gil", "-o", str(out),
                           str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    header = proc.stderr.split("self%")[0]
    assert "warning: Sampled with the GIL-holding backend" in header
    html = out.read_text()
    assert 'class="oxr-item oxr-warning"' in html and "C calls that hold the GIL" in html


def test_the_flask_status_page_carries_it() -> None:
    pytest.importorskip("flask_login")
    proc = run_python("""
        from flask import Flask
        from flask_login import LoginManager, UserMixin, login_user
        from ox_profile.ui.flask.views import OX_PROF_BP
        app = Flask("caveat")
        app.config.update(SECRET_KEY="k", OX_PROF_USERS={"admin"})
        class User(UserMixin):
            def __init__(self, name):
                self.id = self.name = name
        LoginManager(app).user_loader(User)
        @app.route("/login_as")
        def login_as():
            login_user(User("admin"))
            return "ok"
        app.register_blueprint(OX_PROF_BP)
        client = app.test_client()
        client.get("/login_as")
        OX_PROF_BP.unpause()
        import time
        end = time.time() + 0.3
        while time.time() < end:
            pass
        page = client.get("/ox_profile/status").get_data(as_text=True)
        print("WARNING-SHOWN" if 'id="oxp-warning"' in page and "C calls that hold the GIL" in page else page)
        OX_PROF_BP.launcher.cancel()
    """, env={"OX_PROFILE_BACKEND": "gil"})
    assert "WARNING-SHOWN" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_profilers_own_frames_never_appear(backend: str, tmp_path) -> None:
    """Neither the API the program calls (stop, snapshot, label) nor the
    launcher (ox_profile.cli, runpy) shows in the samples."""
    def busy() -> None:
        spin(0.05)

    prof = ox_profile.Profiler(interval=0.0005, backend=backend)
    prof.start()
    for _ in range(5):
        busy()
        with ox_profile.label("work"):
            busy()
        prof.snapshot()
        prof.pause()
        prof.resume()
    prof.stop()
    package = ox_profile.__file__.rsplit("/", 1)[0] + "/"
    profile = prof.snapshot()
    files = {stack_frame.function.filename for s in profile.stacks() for stack_frame in s.frames}
    assert files and not any(f.startswith(package) for f in files), files
    assert any(f.function.name == "busy" for s in profile.stacks() for f in s.frames)

    script = tmp_path / "prog.py"
    script.write_text("import time\ndef busy():\n    end = time.time() + 0.3\n    while time.time() < end: pass\n"
                      "busy()\ntime.sleep(0.1)\n")
    out = tmp_path / "out.collapsed"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "--backend", backend, "-o", str(out),
                           str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines and all(line.startswith("__main__.<module>") for line in lines), lines


def test_a_synchronous_capture_keeps_its_callers_without_our_frames() -> None:
    """The seed's Sampler.run() records the calling thread too (as the
    original did), without the sampler's own frame."""
    from ox_profile.core import recording, sampling

    sampler = sampling.Sampler(recording.CountingRecorder())

    def caller() -> None:
        sampler.run()

    caller()
    names = [r.name for r in sampler.my_db.query(re_filter=".", max_records=None)[0]]
    assert "caller(test_caveats)" in names
    assert not any("ox_profile." in name for name in names), names
