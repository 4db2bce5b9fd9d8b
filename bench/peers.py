"""The peer profilers: their venvs under bench/venvs/ and how to run each.

Every peer lives in its own venv, created on demand from the same interpreter
that runs the bench (so every workload runs on the same CPython build), and
installed from PyPI with pip.  Set-up is idempotent: a venv whose stamp file
matches and whose check command works is left alone.
"""

import os
import re
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
VENVS = os.path.join(BENCH, "venvs")

# name -> (pip requirement tried first, fallbacks, check). The check is run
# with the venv's bin/ first on PATH; {py} and {bin} are substituted.
PEERS = {
    "pyspy": (["py-spy"], [], ["{bin}/py-spy", "--version"]),
    "pyinstrument": (["pyinstrument"], [],
                     ["{py}", "-c", "import pyinstrument; print(pyinstrument.__version__)"]),
    # austin-dist 4.x ships a binary linked against glibc >= 2.38; older
    # distributions (Debian 12 has 2.36) need the 3.x series.
    "austin": (["austin-dist"], [["austin-dist<4"]], ["{bin}/austin", "--version"]),
    "orig": (["ox_profile==0.2.14"], [],
             ["{py}", "-c", "from ox_profile.core.launchers import SimpleLauncher; "
              "import importlib.metadata as m; print(m.version('ox_profile'))"]),
}


def venv_dir(name):
    return os.path.join(VENVS, name)


def venv_python(name):
    return os.path.join(venv_dir(name), "bin", "python")


def venv_bin(name, exe):
    return os.path.join(venv_dir(name), "bin", exe)


def _clean_env():
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def _check(name):
    _, _, check = PEERS[name]
    d = venv_dir(name)
    cmd = [c.format(py=venv_python(name), bin=os.path.join(d, "bin")) for c in check]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return False, out.splitlines()[-1] if out else "exit %d" % proc.returncode
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return True, m.group(1) if m else out


def _pip(name, reqs, log):
    cmd = [venv_python(name), "-m", "pip", "install", "-q", "--disable-pip-version-check"] + reqs
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
    log("  pip install %s -> exit %d" % (" ".join(reqs), proc.returncode))
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if "WARNING" not in ln]
        return err[-1] if err else "pip exit %d" % proc.returncode
    return None


def ensure(name, log=lambda msg: print(msg, file=sys.stderr)):
    """Make sure peer ``name`` is installed; returns (ok, version or reason)."""
    d = venv_dir(name)
    if os.path.exists(os.path.join(d, "bin", "python")):
        ok, info = _check(name)
        if ok:
            return True, info
    os.makedirs(VENVS, exist_ok=True)
    log("setting up peer venv %s ..." % d)
    if not os.path.exists(os.path.join(d, "bin", "python")):
        # Same interpreter as the bench (python -m venv from inside a venv
        # uses the base interpreter).
        proc = subprocess.run([sys.executable, "-m", "venv", d], capture_output=True, text=True,
                              env=_clean_env())
        if proc.returncode != 0:
            return False, "venv creation failed: %s" % proc.stderr.strip()[-200:]
    first, fallbacks, _ = PEERS[name]
    reason = None
    for reqs in [first] + fallbacks:
        err = _pip(name, reqs, log)
        if err:
            reason = "pip install %s failed: %s" % (" ".join(reqs), err)
            continue
        ok, info = _check(name)
        if ok:
            return True, info
        reason = "%s installed but does not run: %s" % (" ".join(reqs), info)
        log("  " + reason)
    return False, reason


def ensure_all(log=lambda msg: print(msg, file=sys.stderr)):
    return {name: ensure(name, log) for name in PEERS}


if __name__ == "__main__":
    for peer, (ok, info) in ensure_all().items():
        print("%-13s %s %s" % (peer, "ok" if ok else "n/a", info))
