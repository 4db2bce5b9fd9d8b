"""Who may use the ox_profile pages in a Django project: deny by default.

* ``settings.OX_PROFILE_AUTHORIZE``, when set, is a callable taking the
  request (or the dotted path of one).  Only ``True`` allows; anything else
  is refused with a 403 page (and a log line when it is not ``False``/``None``).
* Otherwise ``django.contrib.auth`` decides who the user is: anonymous users
  are sent to ``settings.LOGIN_URL`` (JSON routes: a 401), logged-in users
  get in when ``user.get_username()`` is in ``settings.OX_PROFILE_USERS``,
  and everybody else gets a 403 page saying how to get access.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Collection, Tuple, Union

__all__ = ["Refusal", "check_access"]

log = logging.getLogger("ox_profile.django")

#: (message, help text, status) of a refusal page.
Refusal = Tuple[str, str, int]


def _authorize_callable(value: Any) -> Callable[[Any], Any]:
    if isinstance(value, str):
        from django.utils.module_loading import import_string
        return import_string(value)
    return value


def _users(value: Any) -> Collection[Any]:
    if not value:
        return ()
    if isinstance(value, (str, bytes)):
        return (value,)
    return value


def check_access(request: Any) -> Union[None, Refusal, Any]:
    """None when ``request`` may use ox_profile; else a :data:`Refusal`, or a
    response to send (the redirect to the login page)."""
    from django.conf import settings

    authorize = getattr(settings, "OX_PROFILE_AUTHORIZE", None)
    if authorize is not None:
        verdict = _authorize_callable(authorize)(request)
        if verdict is True:
            return None
        if verdict is not False and verdict is not None:
            log.warning("ox_profile: OX_PROFILE_AUTHORIZE returned a %s for %s %s, which is not True "
                        "(allow) or False (refuse): refused", type(verdict).__name__, request.method, request.path)
        return ("You are not allowed to use ox_profile.",
                "Access is decided by this site's own check, which refused this request; "
                "ask an administrator of this site for access.", 403)
    users = _users(getattr(settings, "OX_PROFILE_USERS", None))
    user = getattr(request, "user", None)
    if user is None:
        return ("ox_profile access control is not configured.",
                "Enable django.contrib.auth (its AuthenticationMiddleware) and list user names in "
                "settings.OX_PROFILE_USERS, or set settings.OX_PROFILE_AUTHORIZE.", 403)
    if not getattr(user, "is_authenticated", False):
        if request.path.endswith(".json"):
            return ("You must log in to use ox_profile.",
                    "Log in to this site with an account allowed to use ox_profile.", 401)
        from django.contrib.auth.views import redirect_to_login
        return redirect_to_login(request.get_full_path())
    name = user.get_username()
    try:
        allowed = bool(users) and name in users
    except TypeError:
        allowed = False
    if allowed:
        return None
    log.info("ox_profile: refused %s %s to user %r (not in the %d names of OX_PROFILE_USERS)",
             request.method, request.path, name, len(users))
    return ("You are logged in, but your account may not use ox_profile.",
            "To get access, ask an administrator of this site to add your user name to "
            "settings.OX_PROFILE_USERS.", 403)
