"""The FastAPI example under uvicorn and the Django example under gunicorn,
started on 127.0.0.1 (a free port) by the tests, with logged-in clients."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

from servers import ROOT, free_port

BIN = Path(sys.executable).parent
TOKEN = "example-token-for-tests"


class ExampleServer:
    """One example app under its real server; ``client`` is allowed in."""

    kind = ""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.tmp_path = tmp_path
        self.log = open(tmp_path / ("%s-server.log" % self.kind), "wb")
        self.proc: Optional[subprocess.Popen] = None
        self.client = httpx.Client(base_url=self.base, timeout=60)

    def command(self) -> List[str]:
        raise NotImplementedError

    def env(self) -> Dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return env

    def start(self) -> "ExampleServer":
        self.proc = subprocess.Popen(self.command(), cwd=str(ROOT), env=self.env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (self.kind, self.output()))
            try:
                httpx.get(self.base + "/fast", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("%s did not start: %s" % (self.kind, self.output()))

    def output(self) -> str:
        self.log.flush()
        return (self.tmp_path / ("%s-server.log" % self.kind)).read_text(errors="replace")[-3000:]

    def login(self) -> None:
        raise NotImplementedError

    def csrf(self) -> Dict[str, str]:
        raise NotImplementedError

    def action(self, name: str, **form: str) -> httpx.Response:
        data = dict(form, **self.csrf())
        return self.client.post("/ox_profile/" + name, data=data, headers={"Origin": self.base})

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class FastAPIServer(ExampleServer):
    kind = "uvicorn"

    def command(self) -> List[str]:
        return [str(BIN / "uvicorn"), "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-access-log"]

    def env(self) -> Dict[str, str]:
        return dict(super().env(), OX_PROFILE_TOKEN=TOKEN)

    def login(self) -> None:
        r = self.client.post("/login", data={"token": TOKEN})
        assert r.status_code == 303, r.text

    def csrf(self) -> Dict[str, str]:
        return {"csrf_token": self.client.get("/ox_profile/status.json?max_records=1").json()["csrf_token"]}


class DjangoServer(ExampleServer):
    kind = "gunicorn"
    workers = 1

    def command(self) -> List[str]:
        return [str(BIN / "gunicorn"), "-w", str(self.workers), "--threads", "4", "-b", "127.0.0.1:%d" % self.port,
                "examples.django_app.wsgi"]

    def env(self) -> Dict[str, str]:
        return dict(super().env(), OX_DJANGO_EXAMPLE_DB=str(self.tmp_path / "django.sqlite3"),
                    DJANGO_SETTINGS_MODULE="examples.django_app.settings",
                    OX_PROFILE_SHARED_DIR=str(self.tmp_path / "shared"))

    def login(self) -> None:
        page = self.client.get("/login/").text
        token = re.search(r"name=csrfmiddlewaretoken value='([^']+)'", page).group(1)
        r = self.client.post("/login/", data={"username": "admin", "password": "admin",
                                              "csrfmiddlewaretoken": token}, headers={"Origin": self.base})
        assert r.status_code == 303, r.text[:500]

    def csrf(self) -> Dict[str, str]:
        token = self.client.get("/ox_profile/status.json?max_records=1").json()["csrf_token"]
        return {"csrfmiddlewaretoken": token}


async def load_concurrently(base: str, paths: list, concurrency: int) -> list:
    """The answers' statuses to GETs of ``paths``, ``concurrency`` at a time."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(path: str) -> int:
            async with semaphore:
                return (await client.get(path)).status_code

        return await asyncio.gather(*(one(p) for p in paths))
