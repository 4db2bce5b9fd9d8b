"""The web UI without a framework: what the Flask blueprint, the Django app
and the ASGI app share.

* :mod:`~ox_profile.ui.core.control`: the profiler, its controls and the request timings;
* :mod:`~ox_profile.ui.core.params`: the pages' parameters, checked (bad ones: 400);
* :mod:`~ox_profile.ui.core.pages`: what the pages show, JSON and downloads;
* :mod:`~ox_profile.ui.core.guard`: CSRF tokens, requests from other sites, security headers;
* :mod:`~ox_profile.ui.core.render`: the Jinja2 templates and the pages' URLs;
* :mod:`~ox_profile.ui.core.site`: every page as one request handler (Django, ASGI);
* :mod:`~ox_profile.ui.core.timing`, :mod:`~ox_profile.ui.core.pagedata`,
  :mod:`~ox_profile.ui.core.refilter`, :mod:`~ox_profile.ui.core.sharing`:
  request timing, bounded page builds, the bounded re_filter, sharing
  between the processes of a server.

Nothing here imports a web framework; rendering needs Jinja2.
"""
