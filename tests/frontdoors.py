"""The three front doors of the ox_profile pages (Flask, Django, ASGI) behind
one interface, for the tests that run the same table against each: real
apps driven through each framework's own test client."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Callable, Dict, Optional

from conftest import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

P = "/ox_profile"
NOT_SET = object()


class Door:
    """One framework's app with the pages under /ox_profile.  ``configure``
    sets who may get in: ``users`` (names allowed, for login-based doors),
    ``user`` (who is logged in, None: nobody), ``verdict`` (what an
    authorize callable returns; NOT_SET: no callable)."""

    name = ""
    csrf_field = "csrf_token"
    #: Status of an anonymous visitor refused by a login-based door.
    anonymous_status = 302

    control: Any = None

    def configure(self, users: Any = (), user: Optional[str] = None, verdict: Any = NOT_SET) -> None:
        raise NotImplementedError

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Any:
        raise NotImplementedError

    def head(self, path: str) -> Any:
        raise NotImplementedError

    def post(self, path: str, data: Dict[str, str], headers: Optional[Dict[str, str]] = None) -> Any:
        raise NotImplementedError

    def token(self) -> str:
        """The CSRF token the pages give this client."""
        return self.get(P + "/status.json").json()["csrf_token"]

    def post_with_token(self, path: str, data: Optional[Dict[str, str]] = None) -> Any:
        return self.post(path, dict(data or {}, **{self.csrf_field: self.token()}))


class _Response:
    """status_code, text, headers, json() of any framework's test response."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status_code = status
        self.content = body
        self.text = body.decode("utf-8", "replace")
        self.headers = {k.lower(): v for k, v in headers.items()}

    def json(self) -> Any:
        import json
        return json.loads(self.text)


class FlaskDoor(Door):
    name = "flask"

    def __init__(self) -> None:
        from flask import Flask
        from flask_login import LoginManager, UserMixin, login_user

        from ox_profile.ui.flask import OX_PROF_BP

        class User(UserMixin):
            def __init__(self, name: str) -> None:
                self.id = self.name = name

        self.control = OX_PROF_BP
        self._verdict: Any = NOT_SET
        app = self.app = Flask("oxp_frontdoor")
        app.config.update(SECRET_KEY="frontdoor-secret", TESTING=True, OX_PROF_SHARED=False)
        manager = LoginManager(app)
        manager.login_view = "login"
        manager.user_loader(User)

        @app.route("/login", endpoint="login")
        def login() -> str:
            return "log in"

        @app.route("/test_login/<name>")
        def test_login(name: str) -> str:
            login_user(User(name))
            return "ok"

        app.register_blueprint(OX_PROF_BP)
        self.client = app.test_client()

    def configure(self, users: Any = (), user: Optional[str] = None, verdict: Any = NOT_SET) -> None:
        self.app.config["OX_PROF_USERS"] = set(users)
        if verdict is NOT_SET:
            self.app.config.pop("OX_PROF_AUTHORIZE", None)
        else:
            self.app.config["OX_PROF_AUTHORIZE"] = lambda: verdict
        self.client = self.app.test_client()
        if user is not None:
            self.client.get("/test_login/" + user)

    def _wrap(self, r: Any) -> _Response:
        return _Response(r.status_code, r.data, dict(r.headers))

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.get(path, headers=headers or {}))

    def head(self, path: str) -> _Response:
        return self._wrap(self.client.head(path))

    def post(self, path: str, data: Dict[str, str], headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.post(path, data=data, headers=headers or {}))


_django_ready = [False]


def setup_django() -> None:
    """Django set up once per process with the example project's settings
    and a database of its own (users admin and eve)."""
    if _django_ready[0]:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    os.environ.setdefault("OX_DJANGO_EXAMPLE_DB", os.path.join(tempfile.mkdtemp(prefix="oxp-dj-"), "db.sqlite3"))
    import django
    django.setup()
    from django.conf import settings
    # One process, several integrations: the Flask tests' blueprint shares
    # this process's profile; Django's control stays this process's own.
    settings.OX_PROFILE_SHARED = False
    from examples.django_app.setup_db import ensure_database
    ensure_database()
    from django.contrib.auth import get_user_model
    users = get_user_model()
    if not users.objects.filter(username="eve").exists():
        users.objects.create_user("eve", password="eve")
    _django_ready[0] = True


class DjangoDoor(Door):
    name = "django"
    csrf_field = "csrfmiddlewaretoken"

    def __init__(self) -> None:
        setup_django()
        from django.test import Client

        from ox_profile.ui.core.control import default_control
        self.control = default_control()
        self._client_class = Client
        self._override: Any = None
        self.client = Client(enforce_csrf_checks=True)

    def configure(self, users: Any = (), user: Optional[str] = None, verdict: Any = NOT_SET) -> None:
        from django.contrib.auth import get_user_model
        from django.test import override_settings
        if self._override is not None:
            self._override.disable()
        self._override = override_settings(
            OX_PROFILE_USERS=list(users),
            OX_PROFILE_AUTHORIZE=None if verdict is NOT_SET else (lambda request: verdict))
        self._override.enable()
        self.client = self._client_class(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(get_user_model().objects.get(username=user))

    def close(self) -> None:
        if self._override is not None:
            self._override.disable()
            self._override = None

    def _wrap(self, r: Any) -> _Response:
        return _Response(r.status_code, r.content, dict(r.items()))

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.get(path, headers=headers or {}))

    def head(self, path: str) -> _Response:
        return self._wrap(self.client.head(path))

    def post(self, path: str, data: Dict[str, str], headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.post(path, data=data, headers=headers or {}))


class AsgiDoor(Door):
    """FastAPI with the middleware and the mounted app; access through an
    ``authorize`` that lets in the users named by an ``X-Test-User`` header
    the client sends (the ASGI door has no login of its own: an anonymous
    visitor is refused with a 403)."""

    name = "asgi"
    anonymous_status = 403

    def __init__(self) -> None:
        import warnings

        from fastapi import FastAPI
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from ox_profile.ui.asgi import OxProfileApp, OxProfileMiddleware
        from ox_profile.ui.core.control import default_control

        self.control = default_control()
        self._users: Any = ()
        self._user: Optional[str] = None
        self._verdict: Any = NOT_SET
        self.app = FastAPI()
        self.app.add_middleware(OxProfileMiddleware)
        self.ui = OxProfileApp(authorize=self._authorize)
        self.app.mount(P, self.ui)
        self._client_class = TestClient
        self.client = TestClient(self.app)

    def _authorize(self, scope: Dict[str, Any]) -> Any:
        if self._verdict is not NOT_SET:
            return self._verdict
        headers = dict(scope["headers"])
        user = headers.get(b"x-test-user", b"").decode()
        return bool(user) and user in self._users

    def configure(self, users: Any = (), user: Optional[str] = None, verdict: Any = NOT_SET) -> None:
        self._users, self._verdict = set(users), verdict
        self.client = self._client_class(self.app, headers={"X-Test-User": user} if user else {})

    def _wrap(self, r: Any) -> _Response:
        return _Response(r.status_code, r.content, dict(r.headers))

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.get(path, headers=headers or {}, follow_redirects=False))

    def head(self, path: str) -> _Response:
        return self._wrap(self.client.head(path, follow_redirects=False))

    def post(self, path: str, data: Dict[str, str], headers: Optional[Dict[str, str]] = None) -> _Response:
        return self._wrap(self.client.post(path, data=data, headers=headers or {}, follow_redirects=False))


DOORS: Dict[str, Callable[[], Door]] = {"flask": FlaskDoor, "django": DjangoDoor, "asgi": AsgiDoor}
