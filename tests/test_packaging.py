"""Packaging, done for real: the sdist and the wheel built with ``python -m
build`` (the wheel from the sdist), what each carries, the sdist's own tests
run after unpacking, ``pip install .`` and ``pip install ".[flask]"`` from a
copy of the clone into a fresh venv, mypy reading the installed package's
hints through ``py.typed``, and ``make demo`` installing only the package."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

import ox_profile

ROOT = Path(__file__).resolve().parent.parent
SRC_PKG = ROOT / "src" / "ox_profile"
VERSION = ox_profile.__version__

pytestmark = pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file() or not SRC_PKG.is_dir(),
                                reason="needs the source tree")


def _run(cmd: List[str], cwd: Path, timeout: float = 600, env: Dict[str, str] = None
         ) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    # The profiler's own switches must not leak into the build or the installs.
    for name in ("OXP_WERROR", "OXP_ASAN", "OXP_NO_NOGIL", "PYTHONPATH", "OXP_EXPECT_ENGINE",
                 "MAKEFLAGS", "MAKELEVEL", "VIRTUAL_ENV"):
        if name not in (env or {}):
            full_env.pop(name, None)
    out = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, env=full_env)
    assert out.returncode == 0, "%s failed (%d):\n%s\n%s" % (" ".join(cmd), out.returncode,
                                                            out.stdout[-4000:], out.stderr[-4000:])
    return out


def _package_files(directory: Path, pattern: str) -> List[str]:
    return sorted(str(p.relative_to(SRC_PKG.parent)) for p in directory.rglob(pattern)
                  if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """An sdist and a wheel built from it, with this venv's setuptools (no network)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=out)
    sdists = list(out.glob("ox_profile-*.tar.gz"))
    wheels = list(out.glob("ox_profile-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the clone: the files git tracks, plus new ones not ignored."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=str(ROOT), capture_output=True, check=True).stdout
    dest = tmp_path_factory.mktemp("clone") / "ox_profile"
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_version_has_one_source() -> None:
    version_file = (SRC_PKG / "_version.py").read_text()
    assert re.search(r'^__version__ = "%s"$' % re.escape(VERSION), version_file, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = {attr = "ox_profile._version.__version__"}' in pyproject
    for path in [ROOT / "setup.py", SRC_PKG / "__init__.py", SRC_PKG / "cli.py"]:
        assert VERSION not in path.read_text(), path
    assert importlib.metadata.version("ox_profile") == VERSION


def test_wheel_contents(dists: Dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        info = "ox_profile-%s.dist-info/" % VERSION
        metadata = whl.read(info + "METADATA").decode()
        entry_points = whl.read(info + "entry_points.txt").decode()
        licenses = [n for n in names if n.startswith(info) and n.endswith("LICENSE")]
        assert licenses, sorted(names)
        assert "ox_profile developers" in whl.read(licenses[0]).decode()
    # The engine, every module, the static files, the templates and py.typed.
    assert [n for n in names if re.fullmatch(r"ox_profile/_engine\.cpython-[^/]+\.so", n)], sorted(names)
    expected = (_package_files(SRC_PKG, "*.py") + _package_files(SRC_PKG / "web" / "static", "*")
                + _package_files(SRC_PKG / "ui" / "core" / "templates", "*") + ["ox_profile/py.typed"])
    assert set(expected) - names == set()
    assert {"ox_profile/web/static/flamegraph.js", "ox_profile/web/static/flamegraph.css",
            "ox_profile/web/static/report.html", "ox_profile/ui/core/templates/ox_prof_status.html"} <= names
    # Nothing that belongs to the sdist only.
    assert not [n for n in names if n.startswith(("tests/", "engine/")) or n.endswith((".c", ".h", ".pyc"))]
    assert "Version: %s" % VERSION in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "License: MIT" in metadata
    assert "Provides-Extra: flask" in metadata
    assert re.search(r'^Requires-Dist: Flask>=2\.2; extra == "flask"$', metadata, re.M)
    assert re.search(r"^ox-profile = ox_profile\.cli:main$", entry_points, re.M)


def test_sdist_contents(dists: Dict[str, Path]) -> None:
    prefix = "ox_profile-%s/" % VERSION
    with tarfile.open(dists["sdist"]) as tar:
        names = {n[len(prefix):] for n in tar.getnames() if n.startswith(prefix)}
        pkg_info = tar.extractfile(prefix + "PKG-INFO").read().decode()
    assert "Version: %s" % VERSION in pkg_info
    tracked = [str(p.relative_to(ROOT)) for d in ("tests", "engine", "src/ox_profile", "examples")
               for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts
               and p.suffix not in (".so", ".pyc")]
    assert set(tracked) - names == set()
    assert {"LICENSE", "README.md", "Makefile", "setup.py", "pyproject.toml", "MANIFEST.in",
            "tests/conftest.py", "src/ox_profile/py.typed"} <= names
    assert not [n for n in names if n.endswith((".so", ".pyc", ".o")) or "__pycache__" in n
                or n.startswith((".venv", "build/"))]


def test_sdist_tests_run_after_unpacking(dists: Dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        tar.extractall(tmp_path, filter="data")
    unpacked = tmp_path / ("ox_profile-%s" % VERSION)
    target = tmp_path / "site"
    # Install from the unpacked sdist (its C engine compiled from what it ships).
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "--target", str(target), str(unpacked)], cwd=tmp_path)
    # A subset that does not measure time (the sampling-rate tests belong to
    # the full run; here the machine may be busy with the rest of the suite).
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=300",
                "tests/test_export.py", "tests/test_paths.py"],
               cwd=unpacked, timeout=900,
               env={"PYTHONPATH": str(target), "OXP_EXPECT_ENGINE": str(target / "ox_profile")})
    summary = out.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 45, out.stdout[-2000:]
    assert "failed" not in summary and "error" not in summary, summary


USER_CODE = '''
import ox_profile
from ox_profile import Profile, Profiler

def work() -> int:
    return sum(i * i for i in range(1000))

with Profiler(interval=0.001, mode="cpu") as prof:
    work()
profile: Profile = prof.snapshot()
rows = profile.top(5)
reveal_type(rows)
reveal_type(profile.filter(threads=[0]).total_samples)
share: float = rows[0].self_share if rows else 0.0
text = profile.render("text")
version: str = ox_profile.__version__
'''

USER_CODE_WRONG = '''
from ox_profile import Profiler

prof = Profiler(interval="fast")
prof.snapshot().top(limit="5")
'''


@pytest.fixture(scope="module")
def installed(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv where ``pip install .`` and then ``pip install ".[flask]"``
    ran in the copy of the clone, as the README says (build isolation: pip
    fetches setuptools itself)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=clone)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "."], cwd=clone)
    out = _run([str(python), "-c", "import importlib.util as u; print(u.find_spec('flask'))"], cwd=venv)
    assert out.stdout.strip() == "None"  # no extra asked, none installed
    _run([str(python), "-m", "pip", "install", "-q", ".[flask]"], cwd=clone)
    return venv


def test_pip_install_from_a_clone(installed: Path, tmp_path: Path) -> None:
    bin_dir = installed / "bin"
    out = _run([str(bin_dir / "ox-profile"), "--version"], cwd=tmp_path)
    assert out.stdout.strip().startswith("ox-profile %s" % VERSION)
    script = tmp_path / "busy.py"
    script.write_text("def busy_loop():\n    return sum(i * i for i in range(3_000_000))\n\nbusy_loop()\n")
    out = _run([str(bin_dir / "ox-profile"), "run", "-o", "busy.html", "busy.py"], cwd=tmp_path)
    assert "busy_loop" in out.stderr
    assert (tmp_path / "busy.html").read_text().startswith("<!DOCTYPE html>")
    # The flask extra brought the blueprint's dependencies.
    out = _run([str(bin_dir / "python"), "-c",
                "import flask_login, ox_profile.ui.flask.views as v; print(v.OX_PROF_BP.name)"], cwd=tmp_path)
    assert out.stdout.strip() == "ox_profile"


def _mypy(installed: Path, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "user_code.py").write_text(code)
    return subprocess.run([sys.executable, "-m", "mypy", "--python-executable", str(installed / "bin" / "python"),
                           "--cache-dir", str(tmp_path / ".mypy_cache"), "--no-error-summary",
                           "user_code.py"], cwd=str(tmp_path), capture_output=True, text=True, timeout=300)


def test_mypy_reads_the_installed_hints(installed: Path, tmp_path: Path) -> None:
    site = list(installed.glob("lib/python*/site-packages/ox_profile/py.typed"))
    assert site, "py.typed is not installed"
    out = _mypy(installed, USER_CODE, tmp_path)
    lines = out.stdout.strip().splitlines()
    # (mypy 2 leaves out the "builtins." its older releases write)
    assert re.search(r'Revealed type is "(builtins\.)?list\[ox_profile\.profile\.FunctionStat\]"$',
                     lines[0]), out.stdout
    assert re.search(r'Revealed type is "(builtins\.)?int"$', lines[1]), out.stdout
    assert len(lines) == 2 and out.returncode == 0, out.stdout  # reveal_type notes only
    out = _mypy(installed, USER_CODE_WRONG, tmp_path)
    assert 'Argument "interval" to "Profiler" has incompatible type "str"; expected "float"' in out.stdout
    assert 'Argument "limit" to "top" of "Profile" has incompatible type "str"; expected "int | None"' in out.stdout


def test_make_demo_installs_only_the_package(clone: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = _run(["make", "demo", "PY=%s" % sys.executable], cwd=clone, timeout=900)
    assert "ox_profile: wrote html profile to demo-profile.html" in out.stderr
    assert "parse_records" in out.stderr
    listed = _run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], cwd=clone)
    packages = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert packages <= {"pip", "setuptools", "wheel", "ox-profile", "packaging"}, packages
    assert "ox-profile" in packages
