"""The example's URLs: its endpoints and ox_profile's pages."""

from django.urls import include, path

from examples.django_app import views

urlpatterns = [
    path("numbers", views.numbers, name="numbers"),
    path("report", views.report, name="report"),
    path("search", views.search, name="search"),
    path("fast", views.fast, name="fast"),
    path("login/", views.login_view, name="login"),
    path("ox_profile/", include("ox_profile.ui.django.urls")),   # ox_profile: its pages
]
