"""/api/v1/settings: the sender identity (anyone signed in reads, admins write)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.services import sender_identity

from ..api_common import json_body
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_settings", __name__, url_prefix="/api/v1/settings")


@bp.get("/sender-identity")
@require("viewer", scope="read")
def get_sender_identity():
    """`{company, postal_address, website}` plus `problems` (what blocks a launch) and
    `footer_text` (the footer lines every message carries)."""
    return jsonify(sender_identity.view(sender_identity.get(appliance().db)))


@bp.put("/sender-identity")
@require("admin", scope="admin")
def put_sender_identity():
    """Replaces all three fields: company and postal_address are required, website optional."""
    identity = sender_identity.save(appliance().db, current(), json_body())
    return jsonify(sender_identity.view(identity))
