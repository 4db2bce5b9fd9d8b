"""URLs for tests/test_django.py: views that report their label or fail,
under a namespace, beside the example project's URLs."""

from django.http import HttpResponse
from django.urls import include, path

import ox_profile


def my_label(request, **kwargs):
    return HttpResponse(ox_profile.get_label() or "-", content_type="text/plain")


def boom(request):
    raise RuntimeError("boom")


def server_error(request):
    return HttpResponse("no", status=503)


shop = ([path("orders/<int:order_id>", my_label, name="order")], "shop")

urlpatterns = [
    path("label", my_label, name="label"),
    path("boom", boom, name="boom"),
    path("unavailable", server_error),
    path("shop/", include(shop)),
    path("", include("examples.django_app.urls")),
]
