"""Liveness for monitors and the installer: GET /healthz (no auth, no secrets)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.services import health

from ..context import appliance

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    report = health.check(appliance())
    return jsonify(report), 200 if report["status"] == "ok" else 503
