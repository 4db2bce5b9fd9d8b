"""The example's endpoints: each burns CPU in a function of its own, so
that a profile shows which endpoint spent what."""

from django.contrib.auth import authenticate, login
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.utils.html import escape

from examples.workloads import crunch_numbers, render_report, search_index

WORK_SECONDS = 0.02  # each endpoint's CPU work a request


def numbers(request):
    return HttpResponse("numbers %d\n" % crunch_numbers(WORK_SECONDS), content_type="text/plain")


def report(request):
    return HttpResponse("report %d\n" % render_report(WORK_SECONDS), content_type="text/plain")


def search(request):
    return HttpResponse("search %d\n" % search_index(WORK_SECONDS), content_type="text/plain")


def fast(request):
    return HttpResponse("ok\n", content_type="text/plain")


def login_view(request):
    """A bare login form (the example's user is admin/admin)."""
    error = ""
    if request.method == "POST":
        user = authenticate(request, username=request.POST.get("username", ""),
                            password=request.POST.get("password", ""))
        if user is not None:
            login(request, user)
            return HttpResponse(status=303, headers={"Location": request.GET.get("next") or "/ox_profile/status"})
        error = "<p>Wrong user name or password.</p>"
    return HttpResponse(
        "<!doctype html><title>Log in</title>%s<form method=post>"
        "<input type=hidden name=csrfmiddlewaretoken value='%s'>"
        "<label>User <input name=username id=username></label> "
        "<label>Password <input name=password id=password type=password></label> "
        "<button id=login type=submit>Log in</button></form>" % (error, escape(get_token(request))))
