"""The ox_profile pages as one Django view: access check, Django's CSRF
check of POSTs, then the framework-free handler (:mod:`ox_profile.ui.core.site`)."""

from __future__ import annotations

from typing import Any, Dict

from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.views.decorators.csrf import csrf_exempt

from ox_profile.ui.core import site
from ox_profile.ui.core.control import default_control
from ox_profile.ui.django.access import check_access

__all__ = ["page", "CSRF_FIELD"]

#: Django's CSRF form field.
CSRF_FIELD = "csrfmiddlewaretoken"


def _first_values(query: Any) -> Dict[str, str]:
    return {name: query.getlist(name)[0] for name in query.keys() if query.getlist(name)}


def _to_django(response: site.WebResponse) -> HttpResponse:
    answer = HttpResponse(response.body, status=response.status, content_type=response.content_type)
    for name, value in response.headers.items():
        answer[name] = value
    return answer


def _csrf_passes(request: Any, checker: CsrfViewMiddleware) -> bool:
    """Whether Django's CSRF check accepts the request (token, Origin, Referer)."""
    return checker.process_view(request, None, (), {}) is None  # type: ignore[arg-type]


@csrf_exempt  # checked below, so that a refusal gets the pages' 400 answer, like Flask's
def page(request: Any, subpath: str = "") -> HttpResponse:
    """Every ox_profile page, ``subpath`` being the path below the URL prefix."""
    base = request.path[:len(request.path) - len(subpath)] if subpath else request.path
    req = site.WebRequest(
        method=request.method.upper(), path="/" + subpath, base=base.rstrip("/"),
        host_url=request.build_absolute_uri("/"), args=_first_values(request.GET),
        headers={name.lower(): value for name, value in request.headers.items()},
        csrf_token="", csrf_field=CSRF_FIELD)
    checker = CsrfViewMiddleware(lambda _request: HttpResponse())
    refusal = check_access(request)
    if isinstance(refusal, HttpResponse):
        return refusal
    if refusal is not None:
        message, help_text, status = refusal
        return checker.process_response(request, _to_django(site.denied(req, message, help_text, status)))
    req.csrf_token = get_token(request)
    if req.method == "POST":
        req.form = _first_values(request.POST)
        req.csrf_valid = _csrf_passes(request, checker)
    response = _to_django(site.handle(default_control(), req))
    return checker.process_response(request, response)
