"""The README's examples, run: every ``python`` block (each in a fresh
interpreter, or as the doctest it is), the ``ipython`` blocks in a real IPython
shell, and the shell blocks' commands and output against the real CLI.  A
printed line's ``# comment`` in a block is what it must print."""

from __future__ import annotations

import ast
import doctest
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="needs the README")

# What tells the README's Python blocks apart: one test each.
KINDS = {
    "from-python": "def run_the_thing",
    "labels": "ox_profile.label(",
    "seed": ">>> from ox_profile.core import launchers",
    "flask": "OX_PROF_BP",
    "django": "ox_profile.ui.django",
    "asgi": "ox_profile.ui.asgi",
}


def blocks(lang: str) -> List[str]:
    text = README.read_text()
    return [m.group(1) for m in re.finditer(r"^```%s\n(.*?)^```$" % re.escape(lang), text, re.M | re.S)]


def python_block(kind: str) -> str:
    found = [b for b in blocks("python") if KINDS[kind] in b]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def run_block(code: str, tmp_path: Path, name: str = "example.py") -> subprocess.CompletedProcess:
    (tmp_path / name).write_text(code)
    proc = subprocess.run([sys.executable, name], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def promised_prints(code: str) -> List[Tuple[str, str]]:
    """(statement, comment) of every ``print(...)  # what it prints`` line."""
    return [(m.group(1), m.group(2).strip()) for m in re.finditer(r"^(print\(.*\))\s+#\s*(.+)$", code, re.M)]


def test_every_python_block_has_its_test() -> None:
    found = blocks("python")
    assert found, "no python blocks in the README"
    for code in found:
        kinds = [k for k, marker in KINDS.items() if marker in code]
        assert len(kinds) == 1, "a README python block without its test:\n" + code
        if not code.lstrip().startswith(">>>"):
            ast.parse(code)  # plain Python, no placeholders


def test_from_python(tmp_path: Path) -> None:
    code = python_block("from-python")
    out = run_block(code, tmp_path).stdout.splitlines()
    row = re.compile(r"^\s*(\d+\.\d)% +(\d+\.\d)%  (\S+)  (\S+):(\d+)$")
    first = row.match(out[0])
    assert first, out
    assert first.group(3) == "__main__.run_the_thing" and first.group(4) == "example.py"
    assert float(first.group(1)) >= 80, out[0]
    # The comment shows a line of the same shape, for the same function.
    shown = re.search(r"^# prints, first: (.*)$", code, re.M).group(1)
    m = row.match(shown)
    assert m and m.group(3) == "__main__.run_the_thing" and m.group(4) == "example.py"
    # the loop's lines: `for` or its body, whichever had most samples
    loop = {i + 1 for i, line in enumerate(code.splitlines()) if "for i in range" in line or "total += " in line}
    assert int(m.group(5)) in loop and int(first.group(5)) in loop, (shown, out[0], loop)
    assert re.fullmatch(r"\d+ samples at \d+ Hz, backend (nogil|gil)", out[-1]), out[-1]
    assert (tmp_path / "run.html").read_text().startswith("<!DOCTYPE html>")


def test_labels(tmp_path: Path) -> None:
    code = python_block("labels")
    out = run_block(code, tmp_path).stdout.splitlines()
    promised = promised_prints(code)
    assert len(promised) == 2
    assert out == [comment for _, comment in promised]
    assert out == ["['nightly-import']", "['import_everything']"]


USER_CODE = textwrap.dedent("""
    import time

    def spin_the_user_code():
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
""")


def test_seed_api_block_runs(tmp_path: Path) -> None:
    source = textwrap.dedent(python_block("seed"))
    # The original README's one placeholder stands for the user's code.
    assert ">>> <call some functions>" in source
    source = source.replace(">>> <call some functions>", ">>> spin_the_user_code()")
    examples = doctest.DocTestParser().get_examples(source)
    assert len(examples) == 9
    script = USER_CODE + "".join(example.source for example in examples)
    text = run_block(script, tmp_path, "seed_example.py").stdout
    assert text.startswith("Items in query:\n  - "), text
    assert re.search(r"^  - spin_the_user_code\(__main__\): \d+$", text, re.M), text


def test_flask_block(tmp_path: Path) -> None:
    pytest.importorskip("flask_login")
    check = textwrap.dedent("""

        # -- the test: what the README says about access --
        from flask_login import LoginManager, UserMixin, login_user

        class User(UserMixin):
            def __init__(self, name):
                self.id = self.name = name

        manager = LoginManager(app)
        manager.user_loader(User)

        @app.route("/as/<name>")
        def as_user(name):
            login_user(User(name))
            return "ok"

        anonymous = app.test_client().get("/ox_profile/status")
        assert anonymous.status_code in (302, 401), anonymous.status_code
        guest = app.test_client()
        guest.get("/as/guest")
        assert guest.get("/ox_profile/status").status_code == 403
        admin = app.test_client()
        admin.get("/as/admin")
        page = admin.get("/ox_profile/status")
        assert page.status_code == 200 and b"Ox Profile Status" in page.data
        print("checked")
    """)
    out = run_block(python_block("flask") + check, tmp_path, "flask_example.py")
    assert out.stdout.strip() == "checked"


def test_django_block(tmp_path: Path) -> None:
    pytest.importorskip("django")
    before = textwrap.dedent("""
        from django.urls import include, path
        MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware",
                      "django.contrib.auth.middleware.AuthenticationMiddleware"]
        urlpatterns = []
    """)
    check = textwrap.dedent("""

        # -- the test: the settings and URLs above in a project --
        import django
        from django.conf import settings
        settings.configure(
            ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, OX_PROFILE_USERS=OX_PROFILE_USERS,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies", SECRET_KEY="x",
            ALLOWED_HOSTS=["testserver"], LOGIN_URL="/login/")
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        from django.contrib.auth.models import User
        from django.test import Client
        assert Client().get("/ox_profile/status").status_code == 302   # to the login page
        guest = Client()
        guest.force_login(User.objects.create_user("guest"))
        assert guest.get("/ox_profile/status").status_code == 403
        admin = Client()
        admin.force_login(User.objects.create_user("admin"))
        page = admin.get("/ox_profile/status")
        assert page.status_code == 200 and b"Ox Profile Status" in page.content
        print("checked")
    """)
    out = run_block(before + python_block("django") + check, tmp_path, "django_example.py")
    assert out.stdout.strip() == "checked"


def test_asgi_block(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    before = textwrap.dedent("""
        from fastapi import FastAPI
        app = FastAPI()

        def is_admin(scope):
            return dict(scope["headers"]).get(b"x-admin") == b"yes"
    """)
    check = textwrap.dedent("""

        # -- the test: what the README says about access --
        import warnings
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
        assert TestClient(app).get("/ox_profile/status").status_code == 403
        page = TestClient(app, headers={"X-Admin": "yes"}).get("/ox_profile/status")
        assert page.status_code == 200 and "Ox Profile Status" in page.text
        print("checked")
    """)
    out = run_block(before + python_block("asgi") + check, tmp_path, "asgi_example.py")
    assert out.stdout.strip() == "checked"


def test_ipython_blocks(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from conftest import ipython_shell
    load, cell = blocks("ipython")
    assert load.strip() == "%load_ext ox_profile"
    assert cell.startswith("%%ox_profile --top 10\n")
    shell = ipython_shell()
    # run_the_thing as the README defines it
    definition = python_block("from-python").split("with ox_profile.Profiler")[0]
    assert shell.run_cell(definition).success
    assert shell.run_cell(load).success
    shown: List[Dict[str, str]] = []
    original = shell.display_pub.publish
    shell.display_pub.publish = lambda data, metadata=None, **kw: shown.append(data)
    try:
        assert shell.run_cell(cell).success
    finally:
        shell.display_pub.publish = original
    assert len(shown) == 1
    rows = [line for line in shown[0]["text/plain"].splitlines() if re.match(r"^\s+\d+\.\d%", line)]
    assert 1 <= len(rows) <= 10 and rows[0].split()[4] == "__main__.run_the_thing", shown[0]["text/plain"]
    assert shown[0]["text/html"].startswith("<iframe")


def test_version_block_matches_the_command() -> None:
    block = [b for b in blocks("sh") if "ox-profile version" in b]
    assert len(block) == 1
    shown = block[0].strip().splitlines()[1:]
    real = subprocess.run([sys.executable, "-m", "ox_profile", "version"], capture_output=True, text=True,
                          timeout=60).stdout.splitlines()
    assert len(shown) == len(real) == 4
    assert re.fullmatch(r"ox-profile \d+\.\d+\.\d+", shown[0]) and real[0].startswith("ox-profile ")
    for readme_line, real_line in zip(shown[1:], real[1:]):
        assert readme_line.split()[0] == real_line.split()[0], (readme_line, real_line)
    if "nogil" in real[3].split(";")[0]:
        assert real[3].split("reader")[0] == shown[3].split("reader")[0]


def test_shell_examples_use_real_options() -> None:
    usage = [b for b in blocks("sh") if "ox-profile run" in b and "ox-profile version" not in b]
    assert usage
    help_text = subprocess.run([sys.executable, "-m", "ox_profile", "run", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    options = set(re.findall(r"(?<=\s)(--?[a-z][a-z-]*)", "\n".join(usage)))
    assert {"-o", "-m", "--top", "--mode"} <= options
    for option in options:
        assert re.search(r"(^|[\s,\[])%s\b" % re.escape(option), help_text), option
