"""Prints the path of a working CPython X.Y interpreter, or nothing.

Looks where these machines keep them: pyenv's versions folder, then
pythonX.Y on PATH (skipping pyenv shims that do not resolve), /usr/bin and
/usr/local/bin.  Usage: python3 tools/find_python.py 3.12
"""

import glob
import os
import shutil
import subprocess
import sys


def works(path: str, version: str) -> bool:
    try:
        out = subprocess.run([path, "-c", "import sys, platform; print('%d.%d' % sys.version_info[:2], "
                              "platform.python_implementation())"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.split() == [version, "CPython"]


def candidates(version: str):
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python" + version)),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/versions/")[1].split("/")[0].split(".")],
                   reverse=True)
    yield from found
    on_path = shutil.which("python" + version)
    if on_path:
        yield on_path
    for d in ("/usr/local/bin", "/usr/bin"):
        yield os.path.join(d, "python" + version)


def main() -> int:
    version = sys.argv[1]
    for path in candidates(version):
        if os.path.exists(path) and works(path, version):
            print(path)
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
