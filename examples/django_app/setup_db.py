"""Creates the example's database and its demo user admin/admin (once;
several workers starting together take turns)."""

import fcntl
import os

from django.conf import settings
from django.core.management import call_command


def ensure_database() -> None:
    """Migrate the database and create admin/admin when missing."""
    path = str(settings.DATABASES["default"]["NAME"])
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command("migrate", verbosity=0, interactive=False)
        from django.contrib.auth import get_user_model
        users = get_user_model()
        if not users.objects.filter(username="admin").exists():
            users.objects.create_user("admin", password=os.environ.get("OX_DJANGO_ADMIN_PASSWORD", "admin"))
