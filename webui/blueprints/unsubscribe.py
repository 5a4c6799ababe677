"""Public unsubscribe links: GET /u/<token> confirms, POST /u/<token> unsubscribes.

No sign-in and no CSRF token: the signed token is the authority, and RFC 8058 one-click
POSTs come from mail providers (body `List-Unsubscribe=One-Click`) without any session.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from appliance.services import unsubscribe as service

from ..auth import csrf
from ..context import appliance

bp = Blueprint("unsubscribe", __name__)


@bp.get("/u/<token>")
def confirm(token: str):
    lead = service.lead_for(appliance().db, appliance().keys, token)
    if lead is None:
        return render_template("unsubscribe.html", state="invalid"), 404
    state = "done" if lead["status"] == "unsubscribed" else "confirm"
    return render_template("unsubscribe.html", state=state, email=lead["email"])


@bp.post("/u/<token>")
@csrf.exempt
def one_click(token: str):
    one_click_post = request.form.get("List-Unsubscribe") == "One-Click"
    result = service.unsubscribe(appliance().db, appliance().keys, token,
                                 via="one-click (RFC 8058)" if one_click_post else "unsubscribe page")
    if result is None:
        return render_template("unsubscribe.html", state="invalid"), 404
    return render_template("unsubscribe.html", state="done", email=result["email"])
