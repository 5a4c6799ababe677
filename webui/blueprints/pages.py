"""Top-level pages."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from appliance.services import setup as setup_service

from ..auth import current
from ..context import appliance

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    if current() is not None:
        return render_template("dashboard.html")
    if setup_service.is_setup_complete(appliance().db):
        return redirect(url_for("ui_auth.login"))
    return render_template("index.html")
