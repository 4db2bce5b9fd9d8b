"""Who may use the ox_profile pages: deny by default.

:func:`check_access` runs before every view of the blueprint (pages,
actions, downloads, JSON and static files alike) and returns ``None`` to let
the request through, or the response to send instead:

* ``app.config['OX_PROF_AUTHORIZE']``, when set, is a callable taking no
  arguments, called inside the request.  It returns true to allow, false to
  refuse with a 403 page, or a response (e.g. a redirect to a login page)
  to send as is.  Apps without Flask-Login use this.
* Otherwise Flask-Login decides who the user is.  Anonymous users get
  Flask-Login's unauthorized handling (``login_manager.unauthorized()``: a
  redirect to ``login_view`` or a 401).  Logged-in users get in only when
  ``getattr(current_user, app.config.get('OX_PROF_USERNAME_FIELD', 'name'))``
  is in ``app.config['OX_PROF_USERS']``; everybody else gets a 403 page that
  says how to get access.  With no ``OX_PROF_USERS`` nobody gets in.

Flask-Login is imported only when it is needed, so an app that sets
``OX_PROF_AUTHORIZE`` does not need it installed.
"""

from __future__ import annotations

from typing import Any, Collection, Optional, Tuple

from flask import Response, current_app, jsonify, render_template, request

__all__ = ["check_access", "allowed_users", "forbidden", "DEFAULT_USERNAME_FIELD"]

DEFAULT_USERNAME_FIELD = "name"


def allowed_users() -> Collection[Any]:
    """``OX_PROF_USERS`` as a collection (a lone string is one user name)."""
    users = current_app.config.get("OX_PROF_USERS") or ()
    if isinstance(users, (str, bytes)):
        return (users,)
    return users


def _wants_json() -> bool:
    return request.path.endswith(".json") or (
        request.accept_mimetypes.best == "application/json")


def forbidden(message: str, help_text: str = "", status: int = 403) -> Response:
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


def check_access() -> Optional[Response]:
    """``None`` when the current request may use ox_profile, else the
    response to send (unauthorized handling, 403 page...)."""
    config = current_app.config
    authorize = config.get("OX_PROF_AUTHORIZE")
    if authorize is not None:
        verdict = authorize()
        if isinstance(verdict, Response):
            return verdict
        if verdict:
            return None
        return forbidden("You are not allowed to use ox_profile.",
                         "Access is decided by app.config['OX_PROF_AUTHORIZE'], which refused "
                         "this request; ask the administrator of this site.")

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
    if not getattr(user, "is_authenticated", False):
        return manager.unauthorized()

    field = config.get("OX_PROF_USERNAME_FIELD", DEFAULT_USERNAME_FIELD)
    users = allowed_users()
    found, name = _user_name(user, field)
    try:
        allowed = found and bool(users) and name in users
    except TypeError:  # unhashable name
        allowed = False
    if allowed:
        return None
    if not users:
        return forbidden(
            "No user may use ox_profile yet: app.config['OX_PROF_USERS'] is empty.",
            "An administrator of this site must add user names to app.config['OX_PROF_USERS'] "
            "(the user attribute compared is current_user.%s)." % field)
    shown = repr(name) if found else "(no attribute %r)" % field
    return forbidden(
        "You are logged in as %s, who is not one of the %d users allowed to use ox_profile."
        % (shown, len(users)),
        "To get access, ask an administrator of this site to add %s to "
        "app.config['OX_PROF_USERS'] (the user attribute compared is current_user.%s, "
        "set by OX_PROF_USERNAME_FIELD)." % (shown, field))
