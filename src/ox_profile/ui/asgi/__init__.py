"""ox_profile for ASGI apps (Starlette, FastAPI, any ASGI framework)::

    from ox_profile.ui.asgi import OxProfileApp, OxProfileMiddleware

    app = FastAPI()
    app.add_middleware(OxProfileMiddleware)        # labels and times each request by its route
    app.mount("/ox_profile", OxProfileApp(authorize=lambda scope: is_admin(scope)))

The pages are the Flask blueprint's (:mod:`ox_profile.ui.flask.views`), at
the same paths below the mount point.  The profiler starts paused; while
unpaused, each request's samples carry its route's path template
(``/items/{item_id}``), inside its own asyncio task (other requests on the
event loop keep theirs).  See docs/asgi.md.
"""

from ox_profile.ui.asgi.app import OxProfileApp
from ox_profile.ui.asgi.middleware import OxProfileMiddleware
from ox_profile.ui.asgi.routes import route_name
from ox_profile.ui.core.control import ProfilerControl, default_control

__all__ = ["OxProfileApp", "OxProfileMiddleware", "route_name", "ProfilerControl", "default_control"]
