"""``python -m ox_profile run ...`` end to end, in subprocesses: the program's
view of itself, exit statuses, profiles written in every ending, up-front
usage errors, the fallback when the output cannot be written, and the live
status on a terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from ox_profile import cli

PROGRAM = r'''
import json, os, sys, time

def oxc_busy(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

def oxc_main():
    info = {"name": __name__, "argv": sys.argv, "path0": sys.path[0]}
    with open(os.environ["OXC_INFO"], "w") as fh:
        json.dump(info, fh)
    oxc_busy(float(os.environ.get("OXC_SECONDS", "0.2")))
    action = os.environ.get("OXC_ACTION", "")
    if action == "exit":
        sys.exit(int(os.environ["OXC_CODE"]))
    if action == "exit-msg":
        sys.exit("oxc says goodbye")
    if action == "raise":
        raise RuntimeError("oxc boom")
    if action == "kbd":
        raise KeyboardInterrupt
    if action == "rmdir":
        os.rmdir(os.environ["OXC_RMDIR"])
    if action == "sleep":
        print("ready", flush=True)
        while True:
            time.sleep(0.05)

if __name__ == "__main__":
    oxc_main()
'''


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog" / "oxc_program.py"
    path.parent.mkdir()
    path.write_text(PROGRAM)
    return path


def run_cli(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env["OXC_INFO"] = str(cwd / "info.json")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ox_profile"] + args, cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def info(cwd: Path) -> dict:
    return json.loads((cwd / "info.json").read_text())


def folded_total(path: Path) -> int:
    total = 0
    for line in path.read_text().splitlines():
        m = re.match(r"^(\S.*) (\d+)$", line)
        assert m, line
        total += int(m.group(2))
    return total


WROTE = re.compile(r"^ox_profile: wrote (\w+) profile to (.+?)( instead)?$", re.M)


# -- running the program ---------------------------------------------------------------


def test_script_runs_as_main_with_its_args(program, tmp_path):
    out = tmp_path / "p.collapsed"
    proc = run_cli(["run", "-o", str(out), str(program), "a", "--flag", "-o", "x"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = info(tmp_path)
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(program), "a", "--flag", "-o", "x"]
    assert seen["path0"] == str(program.parent)
    assert folded_total(out) > 0
    assert "oxc_busy" in out.read_text()
    m = WROTE.search(proc.stderr)
    assert m and m.group(1) == "collapsed" and m.group(2) == str(out) and not m.group(3)
    # the top table went to stderr, without colors (not a terminal)
    assert "self%" in proc.stderr and "oxc_busy" in proc.stderr
    assert "\x1b[" not in proc.stderr


def test_relative_script_and_options(program, tmp_path):
    proc = run_cli(["run", "--interval", "0.002", "--mode", "cpu", "--backend", "gil",
                    "--max-memory", "8", "-o", "p.txt", "prog/oxc_program.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "p.txt").read_text()
    assert "cpu mode" in text and "backend gil" in text
    assert info(tmp_path)["argv"][0].endswith("oxc_program.py")


@pytest.mark.parametrize("code", [0, 3, 7])
def test_exit_code_preserved(program, tmp_path, code):
    out = tmp_path / "p.speedscope.json"
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path,
                   {"OXC_ACTION": "exit", "OXC_CODE": str(code)})
    assert proc.returncode == code, proc.stderr
    assert json.loads(out.read_text())["profiles"]


def test_exit_with_message(program, tmp_path):
    out = tmp_path / "p.collapsed"
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path, {"OXC_ACTION": "exit-msg"})
    assert proc.returncode == 1
    assert "oxc says goodbye" in proc.stderr
    assert folded_total(out) > 0


def test_exception_prints_traceback_and_writes_profile(program, tmp_path):
    out = tmp_path / "p.collapsed"
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path, {"OXC_ACTION": "raise"})
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RuntimeError: oxc boom" in proc.stderr
    assert str(program) in proc.stderr
    tb = proc.stderr[proc.stderr.index("Traceback"):proc.stderr.index("RuntimeError: oxc boom")]
    assert "runpy" not in tb and "cli.py" not in tb  # only the program's frames
    assert folded_total(out) > 0
    assert WROTE.search(proc.stderr)


def test_keyboard_interrupt_writes_profile(program, tmp_path):
    out = tmp_path / "p.collapsed"
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path, {"OXC_ACTION": "kbd"})
    assert proc.returncode == 130, proc.stderr
    assert folded_total(out) > 0
    assert WROTE.search(proc.stderr)


def test_sigint_writes_profile(program, tmp_path):
    out = tmp_path / "p.collapsed"
    env = dict(os.environ, OXC_INFO=str(tmp_path / "info.json"), OXC_ACTION="sleep",
               OXC_SECONDS="0.1")
    proc = subprocess.Popen([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(program)],
                            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert folded_total(out) > 0
    assert "oxc_busy" in out.read_text()


def test_module_mode(tmp_path):
    pkg = tmp_path / "oxcpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(PROGRAM)
    (pkg / "__main__.py").write_text(PROGRAM)
    out = tmp_path / "p.collapsed"
    proc = run_cli(["run", "-o", str(out), "-m", "oxcpkg.mod", "x", "-y"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = info(tmp_path)
    assert seen["name"] == "__main__"
    assert seen["argv"][0] == str(pkg / "mod.py")
    assert seen["argv"][1:] == ["x", "-y"]
    assert seen["path0"] == str(tmp_path)
    assert "oxc_busy" in out.read_text()

    proc = run_cli(["run", "-o", str(out), "-m", "oxcpkg", "z"], tmp_path,
                   {"OXC_ACTION": "exit", "OXC_CODE": "4"})
    assert proc.returncode == 4, proc.stderr
    assert info(tmp_path)["argv"] == [str(pkg / "__main__.py"), "z"]


@pytest.mark.parametrize("ext, fmt", [
    (".html", "html"), (".speedscope.json", "speedscope"), (".collapsed", "collapsed"),
    (".folded", "collapsed"), (".pb.gz", "pprof"), (".pprof", "pprof"), (".txt", "text"),
])
def test_every_format_from_extension(program, tmp_path, ext, fmt):
    out = tmp_path / ("profile" + ext)
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
    m = WROTE.search(proc.stderr)
    assert m and m.group(1) == fmt and m.group(2) == str(out)
    data = out.read_bytes()
    if fmt == "pprof":
        assert data[:2] == b"\x1f\x8b"
    else:
        assert b"oxc_busy" in data


def test_format_overrides_extension(program, tmp_path):
    out = tmp_path / "profile.data"
    proc = run_cli(["run", "--format", "speedscope", "-o", str(out), str(program)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["exporter"] == "ox_profile"


def test_format_without_output_writes_default_file(program, tmp_path):
    proc = run_cli(["run", "--format", "collapsed", str(program)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert folded_total(tmp_path / "ox-profile.collapsed") > 0


def test_no_output_prints_table_only(program, tmp_path):
    proc = run_cli(["run", str(program)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "self%" in proc.stderr and "oxc_busy" in proc.stderr
    assert "wrote" not in proc.stderr
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json", "prog"]
    rows = [ln for ln in proc.stderr.splitlines() if re.match(r"^\s+\d+\.\d%", ln)]
    assert 0 < len(rows) <= cli.TOP_LIMIT


# -- usage errors: one line, exit 2, before the program runs -------------------------


@pytest.mark.parametrize("args", [
    ["run", "{tmp}/missing.py"],
    ["run", "{tmp}/prog"],  # a directory without __main__.py
    ["run", "--format", "svg", "{prog}"],
    ["run", "-o", "{tmp}/out.json", "{prog}"],
    ["run", "-o", "{tmp}/out", "{prog}"],
    ["run", "-o", "{tmp}/no-such-dir/out.txt", "{prog}"],
    ["run", "-o", "{tmp}/prog/oxc_program.py/out.txt", "{prog}"],  # parent is a file
    ["run", "-o", "{tmp}", "--format", "text", "{prog}"],  # output is a directory
    ["run", "--interval", "0", "{prog}"],
    ["run", "--interval", "20", "{prog}"],
    ["run", "--interval", "1e-6", "{prog}"],
    ["run", "--interval", "abc", "{prog}"],
    ["run", "--interval", "nan", "{prog}"],
    ["run", "--mode", "gpu", "{prog}"],
    ["run", "--backend", "turbo", "{prog}"],
    ["run", "--max-memory", "-5", "{prog}"],
    ["run", "--no-such-option", "{prog}"],
    ["run", "-m", "oxc_no_such_module"],
    ["run", "-m", "oxc_no_such_package.sub"],
    ["run", "-m"],
    ["run"],
    ["{prog}"],
])
def test_bad_input_exits_2_before_running(program, tmp_path, args):
    args = [a.format(tmp=tmp_path, prog=program) for a in args]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2, (args, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ox-profile: error: ")
    assert not (tmp_path / "info.json").exists()  # the program never started


def test_unknown_format_message_lists_choices(program, tmp_path):
    proc = run_cli(["run", "-o", "x.json", str(program)], tmp_path)
    for ext in (".html", ".speedscope.json", ".collapsed", ".pb.gz", ".txt"):
        assert ext in proc.stderr


def test_interval_bounds_accepted(program, tmp_path):
    for interval in ("10", "5e-05"):
        config = cli.parse_run(["--interval", interval, str(program)])
        assert config.interval == float(interval)


# -- never lose the profile ------------------------------------------------------------


def test_unwritable_output_falls_back(program, tmp_path):
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    out = outdir / "p.speedscope.json"
    proc = run_cli(["run", "-o", str(out), str(program)], tmp_path,
                   {"OXC_ACTION": "rmdir", "OXC_RMDIR": str(outdir)})
    assert proc.returncode != 0
    assert "could not write the profile to %s" % out in proc.stderr
    m = WROTE.search(proc.stderr)
    assert m and m.group(3) == " instead", proc.stderr
    fallback = Path(m.group(2))
    try:
        assert fallback.parent == Path(__import__("tempfile").gettempdir())
        doc = json.loads(fallback.read_text())
        assert doc["profiles"]
    finally:
        fallback.unlink()


def test_failing_program_and_unwritable_output_keeps_program_status(program, tmp_path):
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    out = outdir / "p.collapsed"
    # the program removes the directory, then exits 5: the status stays 5
    script = tmp_path / "rm_then_exit.py"
    script.write_text("import os, sys\nos.rmdir(%r)\nsys.exit(5)\n" % str(outdir))
    proc = run_cli(["run", "-o", str(out), str(script)], tmp_path)
    assert proc.returncode == 5
    m = WROTE.search(proc.stderr)
    assert m and m.group(3)
    Path(m.group(2)).unlink()


# -- terminal niceties -------------------------------------------------------------------


def test_live_status_on_a_tty(program, tmp_path):
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    out = tmp_path / "p.collapsed"
    env = dict(os.environ, OXC_INFO=str(tmp_path / "info.json"), OXC_SECONDS="1.8")
    proc = subprocess.Popen([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(program)],
                            cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    status = re.findall(r"\r\x1b\[Kox_profile: (\d+\.\d) s, (\d+) samples", text)
    assert status, text
    assert float(status[-1][0]) >= 1.0, text
    # The live line counts what the final report counts (the status thread's
    # own samples left out of both): never more than the final total, and
    # its last value, drawn within 0.5 s of the end, most of it.
    final = int(re.search(r"ox_profile: (\d+) samples, in ", text).group(1))
    live = int(status[-1][1])
    assert 0.4 * final <= live <= final, (live, final)
    assert "\x1b[1m" in text, text  # the table is colored on a terminal
    assert "ox_profile: wrote collapsed profile to" in text, text
    # the status thread's own samples are left out of the profile
    folded = out.read_text()
    assert "LiveStatus" not in folded, folded
    assert "oxc_busy" in folded, folded


# -- in process -------------------------------------------------------------------------


def test_main_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--interval" in out and "-m MODULE" in out
    assert cli.main([]) == 2


def test_run_help_shows_examples_and_environment(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "ox-profile run -o profile.html script.py" in out
    assert "environment:" in out
    assert "OX_PROFILE_BACKEND=auto|nogil|gil" in out and "OX_PROFILE_READER=" in out
    assert "--top N" in out and "--version" not in out


def test_version(tmp_path):
    import ox_profile
    proc = run_cli(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout == "ox-profile %s\n" % ox_profile.__version__
    proc = run_cli(["version"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ox-profile %s" % ox_profile.__version__
    from ox_profile import _engine
    assert lines[2] == "engine %s" % _engine.__file__
    if _engine.BUILD_INFO["nogil_available"]:
        assert lines[3].startswith("backends: nogil (GIL-free capture, layout %s, reader %s) and gil"
                                   % (_engine.BUILD_INFO["layout"], _engine.BUILD_INFO["reader"]))
    else:
        assert lines[3].startswith("backends: gil (portable) only; nogil not available: ")
    proc = run_cli(["version", "extra"], tmp_path)
    assert proc.returncode == 2 and proc.stderr == "ox-profile: error: 'version' takes no arguments\n"


def _table_rows(stderr: str) -> List[str]:
    lines = stderr.splitlines()
    head = [i for i, line in enumerate(lines) if line.lstrip().startswith("self%")]
    assert head, stderr
    return [line for line in lines[head[0] + 1:] if re.match(r"^\s+\d+\.\d%", line)]


def test_top_rows(tmp_path):
    script = tmp_path / "many.py"
    script.write_text("".join("def f%d():\n    return sum(i * i for i in range(40000))\n" % i for i in range(30))
                      + "for _ in range(8):\n" + "".join("    f%d()\n" % i for i in range(30)))
    default = run_cli(["run", str(script)], tmp_path)
    assert default.returncode == 0, default.stderr
    assert len(_table_rows(default.stderr)) == cli.TOP_LIMIT
    assert re.search(r"^\.\.\. \d+ more functions$", default.stderr, re.M)
    three = run_cli(["run", "--top", "3", str(script)], tmp_path)
    assert len(_table_rows(three.stderr)) == 3
    every = run_cli(["run", "--top", "all", str(script)], tmp_path)
    assert len(_table_rows(every.stderr)) > cli.TOP_LIMIT
    assert "more functions" not in every.stderr
    for bad in ("0", "-2", "many"):
        proc = run_cli(["run", "--top", bad, str(script)], tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("ox-profile: error: --top must"), proc.stderr


def test_table_printed_from_a_launcher_with_a_long_path(tmp_path):
    """The frames of the launcher are left out of the table by a pattern
    holding its path: a long path (a venv deep in a tree) must not stop the
    table (it did: the pattern went through the user filter's length cap)."""
    deep = tmp_path.joinpath(*["a-rather-long-directory-name-%d" % i for i in range(8)], "bin")
    deep.mkdir(parents=True)
    launcher = deep / "ox-profile"
    launcher.write_text("import sys\nfrom ox_profile.cli import main\nsys.exit(main())\n")
    script = tmp_path / "busy.py"
    script.write_text("def busy_loop():\n    return sum(i * i for i in range(2_000_000))\n\nbusy_loop()\n")
    proc = subprocess.run([sys.executable, str(launcher), "run", str(script)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "could not print" not in proc.stderr and "busy_loop" in proc.stderr, proc.stderr
    assert len(str(launcher)) > 200 and "ox-profile" not in _table_rows(proc.stderr)[0]


def test_main_usage_error_in_process(capsys, program):
    assert cli.main(["run", "--interval", "99", str(program)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ox-profile: error: --interval")


def test_split_run_args():
    split = cli._split_run_args
    assert split(["-o", "x.txt", "s.py", "-o", "y"]) == (["-o", "x.txt"], "s.py", ["-o", "y"])
    assert split(["--interval=0.01", "-m", "pkg.mod", "--x"]) == (
        ["--interval=0.01", "-m", "pkg.mod"], None, ["--x"])
    assert split(["-mpkg", "a"]) == (["-m", "pkg"], None, ["a"])
    assert split(["--", "-weird.py", "a"]) == ([], "-weird.py", ["a"])


def test_sigterm_still_writes_the_profile(tmp_path) -> None:
    import signal, subprocess, sys, time
    script = tmp_path / "loop.py"
    script.write_text("import time\nprint('ready', flush=True)\nwhile True:\n    sum(range(1000))\n")
    out = tmp_path / "out.collapsed"
    proc = subprocess.Popen([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert out.exists() and sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines()) > 0


def test_launcher_frames_are_left_out_of_the_profile(tmp_path) -> None:
    import subprocess, sys
    script = tmp_path / "busy.py"
    script.write_text("import time\ndef busy():\n    end = time.time() + 0.3\n    while time.time() < end: pass\nbusy()\n")
    out = tmp_path / "out.collapsed"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    busy = [line for line in lines if "busy" in line]
    assert busy and all(line.startswith("__main__.<module>") for line in busy), busy[:3]
    assert not any("runpy" in line or "ox_profile.cli" in line for line in busy)
