"""User interfaces of ox_profile; :mod:`ox_profile.ui.flask` is the Flask blueprint."""
