"""Settings of the example project: what ox_profile needs is marked."""

import os
import tempfile

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example only: change me")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]

MIDDLEWARE = [
    "ox_profile.ui.django.middleware.OxProfileMiddleware",   # ox_profile: label and time each request
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

#: ox_profile: the Django user names allowed to use its pages (nobody by default).
OX_PROFILE_USERS = ["admin"]

LOGIN_URL = "/login/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("OX_DJANGO_EXAMPLE_DB",
                               os.path.join(tempfile.gettempdir(), "ox_profile_django_example.sqlite3")),
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TEMPLATES: list = []
LOGGING = {"version": 1, "disable_existing_loggers": False}
