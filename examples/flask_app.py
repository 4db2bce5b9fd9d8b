"""Demo: a small Flask app profiled by ox_profile's blueprint.

Run it with Flask's server::

    .venv/bin/python examples/flask_app.py            # http://127.0.0.1:5000/

or under gunicorn, with several worker processes (each samples itself; any
worker's page shows them all, and the buttons act on all of them)::

    .venv/bin/gunicorn -w 4 --threads 4 -b 127.0.0.1:5000 examples.flask_app:app

Log in as ``admin``/``admin`` (allowed to use the profiler) or
``guest``/``guest`` (logged in, but not allowed), open
http://127.0.0.1:5000/ox_profile/status, press "Unpause", load /slow_cpu,
/slow_io and /fast a few times, and reload the status page.

Environment: ``PORT`` (default 5000), ``OX_DEMO_PROFILER=0`` leaves the
blueprint out (the load benchmark's baseline), ``OX_DEMO_MODE=cpu`` samples
only threads that ran (default ``wall``: every thread), ``OX_DEMO_ALWAYS_TIME=1``
times requests while paused too, ``OX_DEMO_UNPAUSE=1`` unpauses the
profiler when the app is created (in gunicorn's master with ``--preload``),
``OX_DEMO_SECRET`` sets the session key.  Without it the key is random, made
once per server and kept in the server's private ox_profile directory, so
every worker process accepts the same login (a key drawn by each worker
would log you out whenever another worker answers).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Optional
from urllib.parse import urlsplit

from flask import Flask, Response, abort, redirect, render_template_string, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

#: The in-memory user store: name -> password.
USERS = {"admin": "admin", "guest": "guest"}
#: The users allowed to use ox_profile.
PROFILER_USERS = {"admin"}
#: The name of the demo's background thread (markup on purpose: the status
#: page must show it as text).
BACKGROUND_THREAD_NAME = "<script>alert(1)</script>"


class User(UserMixin):
    """A demo user; ``name`` is what OX_PROF_USERNAME_FIELD looks at."""

    def __init__(self, name: str) -> None:
        self.id = name
        self.name = name


def fib(n: int) -> int:
    """Naive Fibonacci: the recognisable CPU hog of /slow_cpu."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def wait_for_io(seconds: float) -> None:
    """Stand-in for a slow database or network call."""
    time.sleep(seconds)


def crunch_numbers(n: int) -> int:
    """The background thread's work."""
    return sum(i * i for i in range(n))


def background_work(stop: threading.Event) -> None:
    """Runs in the thread named BACKGROUND_THREAD_NAME until ``stop`` is set."""
    while not stop.wait(0.1):
        crunch_numbers(5000)


_background_stop = threading.Event()
_background_lock = threading.Lock()
_background: Optional[threading.Thread] = None


def start_background_thread() -> threading.Thread:
    """Start the background thread once per process."""
    global _background
    with _background_lock:
        if _background is None or not _background.is_alive():
            _background = threading.Thread(target=background_work, args=(_background_stop,),
                                           name=BACKGROUND_THREAD_NAME, daemon=True)
            _background.start()
        return _background


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ox_profile demo</title></head>
<body style="font-family: sans-serif">
<h1>ox_profile demo</h1>
{% if user %}<p>Logged in as <b>{{ user }}</b> (<a href="{{ url_for('logout') }}">log out</a>)</p>
{% else %}<p><a href="{{ url_for('login') }}">Log in</a> (admin/admin may profile, guest/guest may not)</p>{% endif %}
<ul>
  <li><a href="{{ url_for('fast') }}">/fast</a>: almost nothing</li>
  <li><a href="{{ url_for('slow_cpu') }}">/slow_cpu</a>: computes fib(25)</li>
  <li><a href="{{ url_for('slow_io') }}">/slow_io</a>: waits 50 ms</li>
  <li><a href="{{ url_for('fail') }}">/fail</a>: answers 500</li>
  {% if profiled %}<li><a href="{{ url_for('ox_profile.status') }}">/ox_profile/status</a>: the profiler</li>{% endif %}
</ul>
</body></html>"""

LOGIN = """<!doctype html><html><head><meta charset="utf-8"><title>Log in</title></head>
<body style="font-family: sans-serif"><h1>Log in</h1>
{% if error %}<p style="color: #b00" id="login-error">{{ error }}</p>{% endif %}
<form method="post">
  <input type="hidden" name="next" value="{{ next }}">
  <label>User <input name="username" id="username"></label>
  <label>Password <input name="password" id="password" type="password"></label>
  <button type="submit" id="login">Log in</button>
</form></body></html>"""


def server_secret() -> str:
    """A random session key shared by every process of this server: read
    from, or created in, the server's private ox_profile directory (0700; the
    file is 0600, created exclusively, never through a symbolic link).  A
    key of this process alone when that directory cannot be used."""
    from ox_profile.shared import SharingUnavailable, open_server_dir, server_of
    try:
        shared = open_server_dir(None, server_of())
    except SharingUnavailable:
        return secrets.token_hex(32)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open("demo-secret", flags, 0o600, dir_fd=shared.fd)
        except FileExistsError:
            for _ in range(50):  # another worker may be writing it right now
                fd = os.open("demo-secret", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=shared.fd)
                with os.fdopen(fd) as fh:
                    key = fh.read().strip()
                if len(key) == 64:
                    return key
                time.sleep(0.02)
            return secrets.token_hex(32)
        key = secrets.token_hex(32)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key
    finally:
        shared.close()


def _safe_next(target: Optional[str]) -> str:
    """Only local paths are followed after logging in."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return "/"


def create_app(profiler: bool = True) -> Flask:
    """The demo app; ``profiler=False`` leaves the ox_profile blueprint out."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("OX_DEMO_SECRET") or server_secret()
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

    login_manager = LoginManager(app)
    login_manager.login_view = "login"

    @login_manager.user_loader
    def load_user(user_id: str) -> Optional[User]:
        return User(user_id) if user_id in USERS else None

    @app.route("/")
    def home() -> str:
        user = current_user.name if current_user.is_authenticated else None
        return render_template_string(PAGE, user=user, profiled=profiler)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> object:
        error = None
        if request.method == "POST":
            name = request.form.get("username", "")
            if USERS.get(name) is not None and secrets.compare_digest(
                    USERS[name], request.form.get("password", "")):
                login_user(User(name))
                return redirect(_safe_next(request.form.get("next")))
            error = "Unknown user or wrong password."
        return render_template_string(LOGIN, error=error, next=_safe_next(request.args.get("next")))

    @app.route("/logout")
    def logout() -> object:
        logout_user()
        return redirect(url_for("home"))

    @app.route("/fast")
    def fast() -> Response:
        return Response("fast\n", mimetype="text/plain")

    @app.route("/slow_cpu")
    def slow_cpu() -> Response:
        n = request.args.get("n", "25")
        if not n.isdigit() or not 1 <= int(n) <= 27:
            abort(400, "n must be a whole number from 1 to 27")
        return Response("fib(%s) = %d\n" % (n, fib(int(n))), mimetype="text/plain")

    @app.route("/slow_io")
    def slow_io() -> Response:
        wait_for_io(0.05)
        return Response("waited 50 ms\n", mimetype="text/plain")

    @app.route("/fail")
    def fail() -> Response:
        return Response("failed on purpose\n", status=500, mimetype="text/plain")

    if profiler:
        # The original README's snippet, word for word.
        from ox_profile.ui.flask.views import OX_PROF_BP
        app.register_blueprint(OX_PROF_BP)
        app.config['OX_PROF_USERS'] = PROFILER_USERS
        if os.environ.get("OX_DEMO_MODE"):
            OX_PROF_BP.launcher_options["mode"] = os.environ["OX_DEMO_MODE"]
        if os.environ.get("OX_DEMO_ALWAYS_TIME") == "1":
            OX_PROF_BP.always_time_requests = True
        if os.environ.get("OX_DEMO_UNPAUSE") == "1":
            OX_PROF_BP.unpause()

    start_background_thread()
    return app


# Threads do not survive a fork: a worker forked from a master that created
# the app (gunicorn --preload) starts its own background thread.
os.register_at_fork(after_in_child=lambda: _background is not None and start_background_thread())


app = create_app(profiler=os.environ.get("OX_DEMO_PROFILER", "1") != "0")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), threaded=True)
