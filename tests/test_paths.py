"""Readable file names (ox_profile.paths) and where they show: the text table,
folded stacks and flame data show the file relative to the sys.path entry it
was imported from; speedscope and pprof keep the full path."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ox_profile import export
from ox_profile.paths import PathShortener, default_roots, short_path

SITE = "/home/me/.venv/lib/python3.11/site-packages"


@pytest.mark.parametrize("filename, module, roots, expected", [
    # the module says which part of the path is its own
    (SITE + "/docutils/statemachine.py", "docutils.statemachine", (), "docutils/statemachine.py"),
    (SITE + "/docutils/__init__.py", "docutils", (), "docutils/__init__.py"),
    ("/usr/lib/python3.11/json/decoder.py", "json.decoder", ("/usr/lib/python3.11",), "json/decoder.py"),
    # a module whose file is elsewhere than its name says: by the roots
    ("/srv/app/tool.py", "renamed", ("/srv", "/srv/app"), "tool.py"),
    ("/srv/app/tool.py", "__main__", ("/srv",), "app/tool.py"),
    ("/srv/app/tool.py", "?", ("/srv/app/",), "tool.py"),
    # nothing to go by: unchanged
    ("/opt/other/x.py", "__main__", ("/srv",), "/opt/other/x.py"),
    ("<frozen runpy>", "runpy", ("/srv",), "<frozen runpy>"),
    ("<string>", "__main__", (), "<string>"),
    ("relative/x.py", "x", ("/srv",), "relative/x.py"),
    # a root that is only a prefix of a directory name does not count
    ("/srv/application/x.py", "__main__", ("/srv/app",), "/srv/application/x.py"),
])
def test_short_path(filename: str, module: str, roots: tuple, expected: str) -> None:
    assert short_path(filename, module, roots) == expected


def test_default_roots_are_absolute_without_the_filesystem_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    roots = default_roots(["", "/", "rel", str(tmp_path / "a"), str(tmp_path / "a")])
    assert roots == (str(tmp_path), str(tmp_path / "rel"), str(tmp_path / "a"))
    shorten = PathShortener(roots)
    assert shorten(str(tmp_path / "a" / "m.py"), "__main__") == "m.py"
    assert shorten(str(tmp_path / "b" / "m.py"), "__main__") == "b/m.py"


PACKAGE_MODULE = textwrap.dedent("""
    import time

    def oxp_paths_work(seconds):
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n
""")

PROGRAM = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from oxp_paths_pkg import worker

    def oxp_paths_main():
        worker.oxp_paths_work(0.3)

    oxp_paths_main()
""")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A program in prog/ that imports oxp_paths_pkg.worker from libs/; the
    working directory elsewhere."""
    (tmp_path / "libs" / "oxp_paths_pkg").mkdir(parents=True)
    (tmp_path / "libs" / "oxp_paths_pkg" / "__init__.py").write_text("")
    (tmp_path / "libs" / "oxp_paths_pkg" / "worker.py").write_text(PACKAGE_MODULE)
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "oxp_paths_prog.py").write_text(PROGRAM)
    (tmp_path / "cwd").mkdir()
    return tmp_path


def _run(run_dir: Path, out: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(run_dir / out),
                           str(run_dir / "prog" / "oxp_paths_prog.py"), str(run_dir / "libs")],
                          cwd=str(run_dir / "cwd"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_table_and_folded_show_short_paths(run_dir: Path) -> None:
    proc = _run(run_dir, "p.collapsed")
    lines = {line.split()[-2]: line for line in proc.stderr.splitlines() if "oxp_paths_" in line}
    # the imported module by its sys.path entry, the script by its directory
    assert lines["oxp_paths_pkg.worker.oxp_paths_work"].split()[-1].startswith("oxp_paths_pkg/worker.py:")
    assert lines["__main__.oxp_paths_main"].split()[-1] == "oxp_paths_prog.py:6"  # no self samples: first line
    table = proc.stderr.split("ox_profile: wrote")[0]
    assert str(run_dir) not in table
    folded = (run_dir / "p.collapsed").read_text()
    assert "oxp_paths_pkg.worker.oxp_paths_work (oxp_paths_pkg/worker.py:4)" in folded
    assert "__main__.oxp_paths_main (oxp_paths_prog.py:6)" in folded
    assert str(run_dir) not in folded


def test_exports_keep_full_paths(run_dir: Path) -> None:
    full = str(run_dir / "libs" / "oxp_paths_pkg" / "worker.py")
    _run(run_dir, "p.speedscope.json")
    frames = json.loads((run_dir / "p.speedscope.json").read_text())["shared"]["frames"]
    work = [f for f in frames if f["name"] == "oxp_paths_pkg.worker.oxp_paths_work"]
    assert work and work[0]["file"] == full
    _run(run_dir, "p.pb.gz")
    raw = gzip.decompress((run_dir / "p.pb.gz").read_bytes())
    assert full.encode() in raw and b"oxp_paths_pkg.worker.oxp_paths_work" in raw
    _run(run_dir, "p.html")
    page = (run_dir / "p.html").read_text()
    # flame data: the full path for tooltips, the short one for the table
    assert json.dumps(["oxp_paths_work", "oxp_paths_pkg.worker", full, 4, "oxp_paths_pkg/worker.py"]
                      ).replace(" ", "") in page.replace(" ", "")


def test_profile_in_process_uses_sys_path(tmp_path: Path, monkeypatch) -> None:
    import ox_profile
    (tmp_path / "oxp_paths_inproc.py").write_text(PACKAGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import oxp_paths_inproc
    with ox_profile.Profiler(interval=0.001) as prof:
        oxp_paths_inproc.oxp_paths_work(0.2)
    top = [s for s in prof.snapshot().top() if s.function.name == "oxp_paths_work"][0]
    assert top.function.filename == os.path.join(str(tmp_path), "oxp_paths_inproc.py")
    assert top.function.short_filename == "oxp_paths_inproc.py"
    assert top.short_location == "oxp_paths_inproc.py:%d" % top.hot_line
    assert top.location == "%s:%d" % (top.function.filename, top.hot_line)
    text = export.render(prof.snapshot(), "text", limit=None)
    assert "oxp_paths_inproc.py:%d" % top.hot_line in text and str(tmp_path) not in text
