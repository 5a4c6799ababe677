"""Access to the running appliance from request handlers."""

from flask import current_app

from appliance.runtime import Appliance


def appliance() -> Appliance:
    return current_app.extensions["mailflow"]


def public_url() -> str:
    """Base of links we hand out (invites, setup, unsubscribe): the configured public URL, or
    when none is configured, the address this request reached us at."""
    from flask import request

    return appliance().config.public_url or request.url_root.rstrip("/")
