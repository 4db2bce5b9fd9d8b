"""WSGI entry point: ``gunicorn -w 1 --threads 4 -b 127.0.0.1:8000 examples.django_app.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
application = get_wsgi_application()

from examples.django_app.setup_db import ensure_database  # noqa: E402  (needs Django set up)

ensure_database()
