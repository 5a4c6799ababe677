"""Top-level pages."""

from __future__ import annotations

from flask import Blueprint, render_template

from appliance.services import setup as setup_service

from ..context import appliance

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return render_template("index.html", setup_complete=setup_service.is_setup_complete(appliance().db))
