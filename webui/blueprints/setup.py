"""The one-time first-run link printed by `mailflow serve`."""

from __future__ import annotations

from flask import Blueprint, render_template

from appliance.services import setup as setup_service

from ..context import appliance

bp = Blueprint("setup", __name__)

_STATUS = {
    setup_service.TokenState.VALID: 200,
    setup_service.TokenState.EXPIRED: 410,
    setup_service.TokenState.USED: 410,
    setup_service.TokenState.UNKNOWN: 404,
}


@bp.get("/setup/<token>")
def setup_page(token: str):
    state = setup_service.check_setup_token(appliance().db, token)
    return render_template("setup.html", state=state.value), _STATUS[state]
