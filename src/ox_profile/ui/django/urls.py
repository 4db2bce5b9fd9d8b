"""URL patterns of the ox_profile pages: ``path("ox_profile/", include("ox_profile.ui.django.urls"))``."""

from django.urls import re_path

from ox_profile.ui.django.views import page

app_name = "ox_profile"

urlpatterns = [
    re_path(r"^(?P<subpath>.*)\Z", page, name="page"),
]
