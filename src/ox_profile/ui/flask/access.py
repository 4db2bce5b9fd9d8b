"""Who may use the ox_profile pages: deny by default.

:func:`check_access` runs before every view of the blueprint (pages,
actions, downloads, JSON and static files alike) and returns ``None`` to let
the request through, or the response to send instead:

* ``app.config['OX_PROF_AUTHORIZE']``, when set, is a callable taking no
  arguments, called inside the request.  Only ``True`` allows; a response
  object (any werkzeug response: a redirect to a login page, an
  ``HTTPException``'s response) is sent as the answer; anything else
  (``False``, ``None``, a string, a tuple, a dict...) is refused with a 403
  and a log line naming what it returned.  Apps without Flask-Login use this.
* Otherwise Flask-Login decides who the user is.  Anonymous users get
  Flask-Login's unauthorized handling (``login_manager.unauthorized()``: a
  redirect to ``login_view`` or a 401); when the app's own handler gives
  nothing to send, a 401.  Logged-in users get in only when
  ``getattr(current_user, app.config.get('OX_PROF_USERNAME_FIELD', 'name'))``
  is in ``app.config['OX_PROF_USERS']``; everybody else gets a 403 page that
  says how to get access, without telling how many users are allowed or
  which attribute is compared (the log has that).  With no
  ``OX_PROF_USERS`` nobody gets in.

Flask-Login is imported only when it is needed, so an app that sets
``OX_PROF_AUTHORIZE`` does not need it installed.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Collection, Optional, Tuple

from flask import current_app, jsonify, render_template, request
from werkzeug.wrappers import Response as BaseResponse

__all__ = ["check_access", "allowed_users", "forbidden", "DEFAULT_USERNAME_FIELD"]

DEFAULT_USERNAME_FIELD = "name"

log = logging.getLogger("ox_profile.flask")


def allowed_users() -> Collection[Any]:
    """``OX_PROF_USERS`` as a collection (a lone string is one user name)."""
    users = current_app.config.get("OX_PROF_USERS") or ()
    if isinstance(users, (str, bytes)):
        return (users,)
    return users


def _wants_json() -> bool:
    return request.path.endswith(".json") or (
        request.accept_mimetypes.best == "application/json")


def forbidden(message: str, help_text: str = "", status: int = 403) -> BaseResponse:
    """The refusal page (or JSON body for JSON routes)."""
    if _wants_json():
        response = jsonify({"error": message, "help": help_text})
    else:
        response = current_app.make_response(render_template(
            "ox_prof_err.html", title="Access denied", error_msg=message, help_text=help_text))
    response.status_code = status
    return response


def _user_name(user: Any, field: str) -> Tuple[bool, Any]:
    try:
        return True, getattr(user, field)
    except Exception:  # noqa: BLE001 - a user model may raise anything
        return False, None


def _authorize(authorize: Callable[[], Any]) -> Optional[BaseResponse]:
    """The answer of ``OX_PROF_AUTHORIZE``: ``None`` (allowed) only for ``True``."""
    verdict = authorize()
    if verdict is True:
        return None
    if isinstance(verdict, BaseResponse):
        return verdict
    if verdict is False or verdict is None:
        log.info("ox_profile: OX_PROF_AUTHORIZE refused %s %s (it returned %s)",
                 request.method, request.path, type(verdict).__name__)
    else:
        log.warning("ox_profile: OX_PROF_AUTHORIZE returned a %s for %s %s, which is not True "
                    "(allow), False (refuse) or a response to send: refused",
                    type(verdict).__name__, request.method, request.path)
    return forbidden("You are not allowed to use ox_profile.",
                     "Access is decided by this site's own check, which refused this request; "
                     "ask an administrator of this site for access.")


def _unauthorized(manager: Any) -> BaseResponse:
    """Flask-Login's answer to an anonymous user, or a 401 when the app's
    unauthorized handler gives nothing usable: never ``None``."""
    answer = manager.unauthorized()  # may raise (abort(401)): Flask answers that
    if isinstance(answer, BaseResponse):
        return answer
    if answer is not None:
        try:
            return current_app.make_response(answer)
        except TypeError:
            pass
    log.warning("ox_profile: Flask-Login's unauthorized handler returned %s for %s %s; "
                "refused with 401", type(answer).__name__, request.method, request.path)
    return forbidden("You must log in to use ox_profile.",
                     "Log in to this site with an account allowed to use ox_profile.", status=401)


def check_access() -> Optional[BaseResponse]:
    """``None`` when the current request may use ox_profile, else the
    response to send (unauthorized handling, 403 page...)."""
    config = current_app.config
    authorize = config.get("OX_PROF_AUTHORIZE")
    if authorize is not None:
        return _authorize(authorize)

    try:
        import flask_login
    except ImportError:
        return forbidden("ox_profile access control is not configured.",
                         "Install Flask-Login and list users in app.config['OX_PROF_USERS'], "
                         "or set app.config['OX_PROF_AUTHORIZE'] to a callable.")
    manager = getattr(current_app, "login_manager", None)
    if manager is None:
        return forbidden("ox_profile access control is not configured.",
                         "Set up Flask-Login (LoginManager().init_app(app)) and list users in "
                         "app.config['OX_PROF_USERS'], or set app.config['OX_PROF_AUTHORIZE'].")
    user = flask_login.current_user
    if getattr(user, "is_authenticated", False) is not True:
        return _unauthorized(manager)

    field = config.get("OX_PROF_USERNAME_FIELD", DEFAULT_USERNAME_FIELD)
    users = allowed_users()
    found, name = _user_name(user, field)
    try:
        allowed = found and bool(users) and name in users
    except TypeError:  # unhashable name
        allowed = False
    if allowed:
        return None
    # The page tells how to get access and nothing about the list (how many
    # names, which attribute); the details go to the log, for administrators.
    log.info("ox_profile: refused %s %s to a user whose %s is %r (not in the %d names of "
             "OX_PROF_USERS)", request.method, request.path, field,
             name if found else "<missing>", len(users))
    return forbidden(
        "You are logged in, but your account may not use ox_profile.",
        "To get access, ask an administrator of this site to add your account to "
        "app.config['OX_PROF_USERS'].")
