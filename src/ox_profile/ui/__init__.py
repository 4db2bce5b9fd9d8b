"""User interfaces of ox_profile: :mod:`ox_profile.ui.flask` (the Flask blueprint),
:mod:`ox_profile.ui.django`, :mod:`ox_profile.ui.asgi`, all built on :mod:`ox_profile.ui.core`."""
