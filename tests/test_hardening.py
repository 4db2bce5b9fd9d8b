"""Small fail-closed checks: mistyped environment variables are errors that
name the valid values; escape sequences in function names reach no terminal
raw; the CLI's HTML report runs only its own scripts (CSP nonce)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import ox_profile
from ox_profile import _validate, export

BAD_ENV = [("OX_PROFILE_BACKEND", "nogli", "auto, nogil, gil"),
           ("OX_PROFILE_BACKEND", "turbo", "auto, nogil, gil"),
           ("OX_PROFILE_READER", "dierct", "direct, vm, procmem"),
           ("OX_PROFILE_READER", "VM", "direct, vm, procmem")]
BAD_ENV_IDS = ["%s=%s" % (name, value) for name, value, _ in BAD_ENV]


@pytest.mark.parametrize("name,value,valid", BAD_ENV, ids=BAD_ENV_IDS)
def test_mistyped_environment_is_an_error_naming_the_valid_values(monkeypatch, name, value, valid):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        ox_profile.Profiler()
    assert isinstance(info.value, _validate.BadEnvironment)
    assert name in str(info.value) and repr(value) in str(info.value) and valid in str(info.value)


@pytest.mark.parametrize("name,value,valid", BAD_ENV, ids=BAD_ENV_IDS)
def test_cli_refuses_a_mistyped_environment_before_running(tmp_path, name, value, valid):
    script = tmp_path / "prog.py"
    marker = tmp_path / "ran"
    script.write_text("open(%r, 'w').close()\n" % str(marker))
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", str(script)], cwd=str(tmp_path),
                          env=dict(os.environ, **{name: value}), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ox-profile: error:") and valid in lines[0], proc.stderr
    assert not marker.exists()


def test_flask_page_says_what_is_wrong_with_the_environment():
    code = textwrap.dedent("""
        from flask import Flask
        from ox_profile.ui.flask.views import OX_PROF_BP
        app = Flask("bad_env")
        app.config["OX_PROF_AUTHORIZE"] = lambda: True
        app.register_blueprint(OX_PROF_BP)
        client = app.test_client()
        page = client.get("/ox_profile/status")
        data = client.get("/ox_profile/status.json")
        print(page.status_code, data.status_code)
        print(page.get_data(as_text=True))
        print(data.get_data(as_text=True))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OX_PROFILE_BACKEND="nogli"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("500 500"), proc.stdout[:500]
    assert "OX_PROFILE_BACKEND" in proc.stdout and "auto, nogil, gil" in proc.stdout


def test_valid_environment_values_still_work(monkeypatch):
    for value in ("", "auto", "gil", " GIL "):
        monkeypatch.setenv("OX_PROFILE_BACKEND", value)
        ox_profile.Profiler()
    monkeypatch.delenv("OX_PROFILE_BACKEND")
    monkeypatch.setenv("OX_PROFILE_READER", "vm")
    ox_profile.Profiler()


# -- escape sequences from the program never reach the terminal raw ------------------------

EVIL = "evil\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eboom"
EVIL_FILE = "/srv/\x1b[31mred.py"
EVIL_PROGRAM = textwrap.dedent("""
    import time
    def work():
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
    work.__code__ = work.__code__.replace(co_name=%r, co_qualname=%r, co_filename=%r)
    work()
""" % (EVIL, EVIL, EVIL_FILE))


def _raw_controls(text: str) -> list:
    """Control characters left once our own color codes (SGR) are removed."""
    return re.findall("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", re.sub(r"\x1b\[[0-9;]*m", "", text))


def test_cli_and_text_export_show_escape_sequences_as_visible_escapes(tmp_path):
    script = tmp_path / "evil.py"
    script.write_text(EVIL_PROGRAM)
    out = tmp_path / "p.txt"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "--backend", "gil", "-o", str(out),
                           str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in (proc.stderr, out.read_text()):
        assert "evil\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eboom" in text, text
        assert "/srv/\\x1b[31mred.py" in text
        assert _raw_controls(text) == [], text


def test_colored_text_export_keeps_only_its_own_color_codes():
    def work():
        from conftest import spin
        spin(0.3)
    work.__code__ = work.__code__.replace(co_name=EVIL, co_qualname=EVIL)
    with ox_profile.Profiler(interval=0.001, backend="gil") as prof:
        work()
    text = export.render(prof.snapshot(), "text", color=True)
    assert "\x1b[" in text  # our colors
    assert _raw_controls(text) == [] and "\x1b]" not in text and "\x1b[2J" not in text
