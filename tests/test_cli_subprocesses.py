"""``ox-profile run --subprocesses``: multiprocessing (fork, spawn,
forkserver) and Python children of subprocess merged into one profile with
their pids, exit statuses unchanged; without the flag, one line saying the
children were not profiled."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent('''
    import json, multiprocessing as mp, os, subprocess, sys, time

    def burn(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def pool_work_{tag}(i):
        burn(0.15)
        return os.getpid()

    def exits_with_3():
        burn(0.1)
        sys.exit(3)

    def waits_forever():
        while True:
            time.sleep(0.05)

    def main():
        ctx = mp.get_context(sys.argv[1])
        with ctx.Pool(2) as pool:
            pool_pids = sorted(set(pool.map(pool_work_{tag}, range(6))))
        p = ctx.Process(target=exits_with_3); p.start(); p.join()
        q = ctx.Process(target=waits_forever); q.start(); time.sleep(0.5); q.terminate(); q.join()
        child = subprocess.run([sys.executable, "-c",
                                "import time\\ndef sub_work_{tag}():\\n    end = time.perf_counter() + 0.3\\n"
                                "    while time.perf_counter() < end: pass\\n"
                                "sub_work_{tag}()\\nimport os; print(os.getpid()); raise SystemExit(7)"],
                               capture_output=True, text=True)
        print(json.dumps({{"pool": pool_pids, "exit3": p.exitcode, "terminated": q.exitcode,
                          "sub": child.returncode, "sub_pid": int(child.stdout)}}), flush=True)
        sys.exit(5)

    if __name__ == "__main__":
        main()
''')


def _run_cli(tmp_path, method, *options, env=None):
    tag = method.replace("-", "_")
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM.format(tag=tag))
    out = tmp_path / "out.speedscope.json"
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", *options, "-o", str(out), str(script),
                           method], capture_output=True, text=True, timeout=240, env=full_env, cwd=tmp_path)
    return proc, out, tag


def _children(proc):
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_children_are_merged_with_their_pids(tmp_path, method):
    proc, out, tag = _run_cli(tmp_path, method, "--subprocesses")
    assert proc.returncode == 5, proc.stderr[-3000:]
    kids = _children(proc)
    # The children's exit statuses are the program's, profiling or not.
    assert kids["exit3"] == 3 and kids["terminated"] == -15 and kids["sub"] == 7
    err = proc.stderr
    assert "not in this profile" not in err
    header = re.search(r"(\d+) processes \(thread names end with their pid\):\n((?:  pid .*\n)+)", err)
    assert header, err[-3000:]
    listed = {int(m.group(1)): m.group(2) for m in re.finditer(r"  pid (\d+) +(\d+) samples", header.group(2))}
    assert os.getpid() not in listed
    for pid in kids["pool"] + [kids["sub_pid"]]:
        assert pid in listed and int(listed[pid]) > 0, (pid, header.group(0))
    # The children's own functions are in the merged profile.
    assert re.search(r"sub_work_%s" % tag, err), err[-3000:]
    doc = json.loads(out.read_text())
    frames = {f["name"] for f in doc["shared"]["frames"]}
    assert any("pool_work_%s" % tag in f for f in frames) and any("sub_work_%s" % tag in f for f in frames)
    # The written profile has a profile per thread, named with its process.
    names = [p["name"] for p in doc["profiles"]]
    for pid in kids["pool"] + [kids["sub_pid"]]:
        assert any("(pid %d)" % pid in n for n in names), (pid, names)
    pool_samples = sum(sum(p["weights"]) for p in doc["profiles"]
                       if any("(pid %d)" % pid in p["name"] for pid in kids["pool"]))
    # Six 0.15 s tasks at 1 kHz: most of them are in the profile.
    assert pool_samples >= 500, pool_samples


def test_without_the_flag_one_line_says_children_were_not_profiled(tmp_path):
    proc, out, tag = _run_cli(tmp_path, "spawn")
    assert proc.returncode == 5, proc.stderr[-3000:]
    kids = _children(proc)
    assert kids["exit3"] == 3 and kids["terminated"] == -15 and kids["sub"] == 7
    notes = [line for line in proc.stderr.splitlines() if "not in this profile" in line]
    assert len(notes) == 1 and "--subprocesses" in notes[0], proc.stderr[-2000:]
    assert "pool_work_" not in proc.stderr and "sub_work_" not in proc.stderr
    assert "processes (thread names" not in proc.stderr


def test_a_program_without_children_gets_no_note(tmp_path):
    script = tmp_path / "alone.py"
    script.write_text("import time\nend = time.perf_counter() + 0.2\nwhile time.perf_counter() < end: pass\n")
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", str(script)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "not in this profile" not in proc.stderr


def test_children_keep_their_own_sitecustomize_and_say_when_they_cannot_be_profiled(tmp_path):
    """A sitecustomize on the program's path still runs in the children; a
    child interpreter without ox_profile runs unprofiled and the run says so."""
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text("import os\nos.environ['SITECUSTOMIZE_RAN'] = 'yes'\n")
    other = shutil.which("python3", path="/usr/bin")
    script = tmp_path / "kids.py"
    script.write_text(textwrap.dedent('''
        import subprocess, sys
        out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('SITECUSTOMIZE_RAN'))"],
                             capture_output=True, text=True)
        print("child sitecustomize:", out.stdout.strip())
        if len(sys.argv) > 1:
            other = subprocess.run([sys.argv[1], "-c", "print('other ran')"], capture_output=True, text=True)
            print("other:", other.stdout.strip(), other.returncode)
    '''))
    args = [other] if other and other != os.path.realpath(sys.executable) else []
    env = dict(os.environ, PYTHONPATH=str(custom))
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "--subprocesses", str(script), *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "child sitecustomize: yes" in proc.stdout
    if args:
        probe = subprocess.run([other, "-c", "import ox_profile"], capture_output=True,
                               env={"PATH": os.environ.get("PATH", "")})
        if probe.returncode != 0:
            assert "other: other ran 0" in proc.stdout
            assert re.search(r"a child process was not profiled: .*python3.*No module named 'ox_profile'",
                             proc.stderr), proc.stderr
