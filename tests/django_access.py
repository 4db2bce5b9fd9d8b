"""An access check named by its dotted path in OX_PROFILE_AUTHORIZE (tests/test_django.py)."""


def allow_header(request) -> bool:
    return request.headers.get("X-Allow") == "yes"
