"""The web integrations are optional: ``import ox_profile`` and the
framework-free parts load without Flask, Django, Starlette or FastAPI, and
the ASGI app serves its pages to a bare ASGI call without any of them."""

from __future__ import annotations

from conftest import run_python

BLOCK = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"flask", "flask_login", "django", "starlette", "fastapi", "werkzeug"}:
            raise ImportError("blocked for the test: " + name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def test_import_without_any_framework() -> None:
    proc = run_python(BLOCK + """
import ox_profile, ox_profile.cli
import ox_profile.ui.core.site, ox_profile.ui.core.control, ox_profile.ui.asgi
assert not {"flask", "django", "starlette", "fastapi"} & set(sys.modules), sorted(sys.modules)
try:
    import ox_profile.ui.django.views
except ImportError as exc:
    print("django views need django:", exc)
print("ok")
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "ok"
    assert "need django" in proc.stdout


def test_asgi_app_on_a_bare_asgi_call() -> None:
    proc = run_python(BLOCK + """
import asyncio
from ox_profile.ui.asgi import OxProfileApp

async def main():
    app = OxProfileApp(authorize=lambda scope: True)
    sent = []
    async def receive():
        return {"type": "http.request", "body": b""}
    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": "/prof/status", "root_path": "/prof",
             "query_string": b"max_records=3", "headers": [(b"host", b"example.org")], "scheme": "http"}
    await app(scope, receive, send)
    start, body = sent
    assert start["status"] == 200, (start, body)
    assert b"Ox Profile Status" in body["body"] and b'action="/prof/unpause"' in body["body"]
    sent.clear()
    await app(dict(scope, query_string=b"max_records=x"), receive, send)
    assert sent[0]["status"] == 400
    print("ok")

asyncio.run(main())
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_one_process_shares_through_one_integration(tmp_path) -> None:
    """Two integrations in one process (Flask's blueprint and the Django or
    ASGI control): the first shares, the second says why it does not."""
    proc = run_python(BLOCK + """
import sys
from ox_profile.ui.core.control import ProfilerControl
first, second = ProfilerControl(), ProfilerControl()
config = {"OX_PROF_SHARED_DIR": sys.argv[1]}
first.sharing.setup(config)
second.sharing.setup(config)
assert first.sharing.share is not None, first.sharing.error
assert second.sharing.share is None
print(second.sharing.error)
first.sharing.share.stop()
""", args=[str(tmp_path / "shared")])
    assert proc.returncode == 0, proc.stderr
    assert "another ox_profile web integration of this process shares already" in proc.stdout
