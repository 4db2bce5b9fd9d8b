"""A small Django project profiled by ox_profile (see docs/django.md)."""
