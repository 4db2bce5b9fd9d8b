"""ox_profile for Django: a middleware that labels and times each request by
its resolved view name, and the pages under a URL prefix of your choice::

    # settings.py
    MIDDLEWARE = [..., "ox_profile.ui.django.middleware.OxProfileMiddleware"]
    OX_PROFILE_USERS = ["alice"]          # Django user names let in (none by default)

    # urls.py
    urlpatterns = [..., path("ox_profile/", include("ox_profile.ui.django.urls"))]

The pages are the Flask blueprint's (:mod:`ox_profile.ui.flask.views`), at
the same paths below the prefix; POSTs go through Django's CSRF check.
Access: ``OX_PROFILE_AUTHORIZE`` (a callable of the request, or its dotted
path; only ``True`` allows) or ``OX_PROFILE_USERS`` (user names of
``django.contrib.auth``); without either nobody gets in.  See docs/django.md.
"""
