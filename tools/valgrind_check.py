"""Runs a program under valgrind memcheck and fails if any error touches the
engine (engine/*.c).  CPython's own reports (an unsuppressed pyenv build
reports a few in longobject.c and ceval.c, with or without ox_profile) are
counted and shown, not failed on.

The GIL-free capture's default reader copies memory that other threads may
have freed, on purpose (a guarded read; see engine/saferead.h), which memcheck
reports as invalid reads: `make valgrind` runs it with OX_PROFILE_READER=vm,
whose copies happen in the kernel, so that every report left is a real one.

Usage: python tools/valgrind_check.py -- python tests/stress_program.py ...
"""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:]
    with tempfile.NamedTemporaryFile("r", suffix=".valgrind.log") as log:
        env = dict(os.environ, PYTHONMALLOC="malloc")
        proc = subprocess.run(["valgrind", "--quiet", "--leak-check=no", "--num-callers=30",
                               "--log-file=" + log.name] + argv, env=env)
        text = open(log.name).read()
    records = [r for r in re.split(r"\n==\d+== \n", text) if r.strip()]
    sources = [name for name in os.listdir(os.path.join(ROOT, "engine")) if name.endswith(".c")]
    ours = [r for r in records
            if "engine/" in r or "_engine.cpython" in r or any("(%s:" % name in r for name in sources)]
    print("valgrind: %d error records, %d in the engine; program exit %d" % (len(records), len(ours), proc.returncode))
    for r in ours:
        print(r)
    return 1 if ours or proc.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
