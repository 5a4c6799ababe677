"""Access to the running appliance from request handlers."""

from flask import current_app

from appliance.runtime import Appliance


def appliance() -> Appliance:
    return current_app.extensions["mailflow"]
