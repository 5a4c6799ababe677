"""The Flask web UI and JSON API. Routes are thin: parse, call one service, render."""

from __future__ import annotations

from flask import Flask

from appliance.runtime import Appliance

from . import auth, errors, limits, security
from .blueprints import BLUEPRINTS

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # CSV imports; the nginx front uses the same limit


def create_app(appliance: Appliance) -> Flask:
    app = Flask(__name__)
    app.config.update(
        # flask-wtf and Flask sessions sign with this; it is a sub-key of the master key,
        # so it never sits in a config file and changes when the master key is rotated.
        SECRET_KEY=appliance.keys.sessions,
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False  # keep the documented field order
    app.extensions["mailflow"] = appliance
    security.init_app(app, appliance.config)
    errors.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    app.jinja_env.globals["current_user"] = auth.current
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
