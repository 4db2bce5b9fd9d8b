"""The Django integration in a real project (the example's settings, Django's
test client): each request is timed and labelled under its resolved view
name, never its raw path; failures count as errors; the label is the
serving thread's only while the view runs."""

from __future__ import annotations

from typing import Iterator

import pytest

from frontdoors import setup_django

pytest.importorskip("django")


@pytest.fixture
def control() -> Iterator[object]:
    setup_django()
    from django.test import override_settings

    from ox_profile.ui.core.control import default_control
    control = default_control()
    control.reset()
    with override_settings(ROOT_URLCONF="django_urls", DEBUG_PROPAGATE_EXCEPTIONS=False):
        control.always_time_requests = True
        try:
            yield control
        finally:
            control.always_time_requests = False
            control.reset()


def test_requests_are_timed_under_their_view_name(control) -> None:
    from django.test import Client
    import ox_profile
    client = Client(raise_request_exception=False)
    assert client.get("/label").content == b"label"
    for order in (1, 2, 3):
        assert client.get("/shop/orders/%d" % order).content == b"shop:order"
    assert client.get("/fast").status_code == 200
    assert client.get("/no/such/page/42").status_code == 404
    assert client.get("/boom").status_code == 500
    assert client.get("/unavailable").status_code == 503
    assert ox_profile.get_label() is None  # the thread's label ends with the request
    rows = {s.endpoint: s for s in control.timings.summaries()}
    # A URL without a name goes under its view's dotted name.
    assert set(rows) == {"label", "shop:order", "fast", "<no endpoint>", "boom", "django_urls.server_error"}, set(rows)
    assert rows["shop:order"].count == 3 and rows["shop:order"].errors == 0
    assert rows["boom"].errors == 1 and rows["django_urls.server_error"].errors == 1
    assert rows["<no endpoint>"].count == 1


def test_paused_the_middleware_does_nothing(control) -> None:
    from django.test import Client
    control.always_time_requests = False
    assert Client().get("/label").content == b"-"
    assert control.timings.count() == 0


def test_authorize_by_dotted_path(control) -> None:
    from django.test import Client, override_settings
    with override_settings(OX_PROFILE_AUTHORIZE="django_access.allow_header"):
        assert Client().get("/ox_profile/status").status_code == 403
        assert Client(headers={"X-Allow": "yes"}).get("/ox_profile/status").status_code == 200
