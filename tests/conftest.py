"""Shared helpers for the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The project's shared material (the seed's description, format specs): at
#: ../shared beside the clone, as on CI, or where OXP_SHARED says.  Tests that
#: need it skip, saying so, when it is not there.
SHARED = Path(os.environ.get("OXP_SHARED") or ROOT.parent / "shared")


def shared_file(relative: str) -> Path:
    """A file of the shared material, or a skip that says where it was looked for."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip("%s not found (the project's shared material is looked for at ../shared beside "
                    "the clone, or at $OXP_SHARED)" % path, allow_module_level=True)
    return path

from ox_profile import _engine  # noqa: E402

# `make test-asan` runs the suite against its sanitizer build: make sure the
# engine imported is that one.
if os.environ.get("OXP_EXPECT_ENGINE"):
    assert _engine.__file__.startswith(os.environ["OXP_EXPECT_ENGINE"]), _engine.__file__
UNDER_ASAN = bool(os.environ.get("OXP_UNDER_ASAN"))

BACKENDS: List[str] = ["gil"] + (["nogil"] if _engine.BUILD_INFO["nogil_available"] else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every capture backend this build has."""
    return request.param


def run_python(code: str, timeout: float = 120, env: Optional[dict] = None,
               args: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)] + (args or []), capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def spin(seconds: float) -> int:
    """Burns CPU in pure Python for ``seconds``; how many rounds it made."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


def spin_until_sampled(profiler, samples: int, at_least: float = 0.0, timeout: float = 20.0) -> None:
    """Burns CPU until ``profiler`` has taken ``samples`` more samples (and at
    least ``at_least`` seconds): a loaded machine may starve the sampler."""
    target = profiler.stats()["samples"] + samples
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        spin(0.01)
        if profiler.stats()["samples"] >= target and time.perf_counter() - start >= at_least:
            return


def ipython_shell():
    """The process's one test IPython shell (IPython.testing.globalipapp),
    without its history-saving thread: a thread left waiting in the test
    process would take half of every later wall-mode profile."""
    from IPython.testing import globalipapp
    globalipapp.start_ipython()  # once per process: later calls do nothing
    shell = globalipapp.get_ipython()
    thread = getattr(shell.history_manager, "save_thread", None)
    if thread is not None and thread.is_alive():
        thread.stop()
    return shell
