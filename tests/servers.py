"""The demo app (examples/flask_app.py) under real pre-fork servers, started
on 127.0.0.1 by the tests, and a logged-in client for it."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
UWSGI = Path(sys.executable).parent / "uwsgi"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """A browser-like client: cookies (the session), JSON, the CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""

    def get(self, path: str, data: Optional[Dict[str, str]] = None, headers: Optional[dict] = None) -> bytes:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        with self.opener.open(request, timeout=60) as response:
            return response.read()

    def status(self, path: str) -> int:
        try:
            self.get(path)
            return 200
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, OSError):
            return 0

    def json(self, path: str) -> Any:
        doc = json.loads(self.get(path))
        if isinstance(doc, dict) and doc.get("csrf_token"):
            self.csrf = doc["csrf_token"]
        return doc

    def post(self, path: str, data: Optional[Dict[str, str]] = None) -> bytes:
        if not self.csrf:
            self.json("/ox_profile/status.json?max_records=1")
        return self.get(path, dict(data or {}), headers={"X-OxProf-CSRF": self.csrf})

    def login(self, user: str = "admin") -> "Client":
        self.get("/login", {"username": user, "password": user, "next": "/"})
        return self

    def cookie_header(self) -> str:
        return "; ".join("%s=%s" % (c.name, c.value) for c in self.jar)


class DemoServer:
    """The demo under ``gunicorn`` (gthread) or ``uwsgi``, its profiles shared
    through ``shared_dir`` (None: the automatic directory)."""

    def __init__(self, kind: str, workers: int, tmp_path: Path, *, threads: int = 4, preload: bool = False,
                 max_requests: Optional[int] = None, shared_dir: Optional[Path] = "auto",  # type: ignore[assignment]
                 env: Optional[Dict[str, str]] = None) -> None:
        self.kind = kind
        self.workers = workers
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.shared_dir = tmp_path / "shared" if shared_dir == "auto" else shared_dir
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.pop("OX_DEMO_SECRET", None)  # the workers share the key they make
        full_env.pop("OX_PROFILE_SHARED_DIR", None)
        if self.shared_dir is not None:
            full_env["OX_PROFILE_SHARED_DIR"] = str(self.shared_dir)
        full_env.update(env or {})
        address = "127.0.0.1:%d" % self.port
        if kind == "gunicorn":
            cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads), "-b", address,
                   "--log-level", "warning", "--graceful-timeout", "5"]
            if preload:
                cmd.append("--preload")
            if max_requests:
                cmd += ["--max-requests", str(max_requests), "--max-requests-jitter", "0"]
            cmd.append("examples.flask_app:app")
        elif kind == "uwsgi":
            cmd = [str(UWSGI), "--http-socket", address, "--processes", str(workers), "--enable-threads",
                   "--chdir", str(ROOT), "--module", "examples.flask_app:app", "--disable-logging"]
        else:
            raise ValueError(kind)
        self.log = tmp_path / ("%s-%d.log" % (kind, self.port))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), start_new_session=True)
        try:
            self._wait_ready(60)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (self.kind, self.log.read_text()[-3000:]))
            if Client(self.base).status("/") == 200 and len(self.worker_pids()) >= self.workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start: %s" % (self.kind, self.log.read_text()[-3000:]))
            time.sleep(0.1)

    def worker_pids(self) -> List[int]:
        """The processes that serve requests: gunicorn's workers (the
        master's children); uWSGI's first process and its children."""
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as fh:
                children = [int(p) for p in fh.read().split()]
        except OSError:
            return []
        if self.kind == "uwsgi":
            return [self.proc.pid] + children
        return children

    def client(self) -> Client:
        return Client(self.base).login()

    def load(self, paths: List[str], requests: int, concurrency: int = 6) -> int:
        """``requests`` requests spread over ``paths`` by ``concurrency``
        clients, each on its own connections (so every worker gets some);
        the number answered 200."""
        done = []

        def run(k: int) -> None:
            client = Client(self.base)
            ok = 0
            for i in range(k, requests, concurrency):
                if client.status(paths[i % len(paths)]) == 200:
                    ok += 1
            done.append(ok)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done)

    def answered_by(self, pid: int, client: Client, path: str, attempts: int = 200) -> Any:
        """``path`` answered by worker ``pid``: requests on fresh keep-alive
        connections until that worker accepts one, then on that connection."""
        for _ in range(attempts):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Cookie": client.cookie_header()})
                doc = json.loads(conn.getresponse().read())
                if doc.get("answered_by") == pid:
                    return conn, doc
            finally:
                pass
            conn.close()
        raise AssertionError("worker %d never answered" % pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.kind == "uwsgi":
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def whole_view_total(flame: dict) -> int:
    """Samples of flame data's first view with those of waiting threads
    (its companion view behind the pages' Idle samples switch)."""
    first = flame["views"][0]
    companions = [v for v in flame["views"] if v.get("idle_of") == first["key"]]
    return int((companions[0] if companions else first)["total"])
