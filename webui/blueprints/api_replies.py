"""/api/v1/replies, /api/v1/leads/{id}/label and /api/v1/inbox-labels: the unified inbox.

Reading never changes state (GET /replies/{id} leaves the message unread); PATCH marks it."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.services import inbox, inbox_labels, inbox_reply
from appliance.services.errors import ValidationError

from ..api_common import json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_replies", __name__, url_prefix="/api/v1")
FILTERS = ("campaign_id", "mailbox_id", "lead_id", "lead_status", "label", "kind", "unread", "q")


@bp.get("/replies")
@require("viewer")
def list_replies():
    """Inbound mail newest first; the cursor is the last id of the previous page."""
    limit, cursor = page_args()
    given = {name: request.args.get(name) for name in FILTERS}
    return page(inbox.search(appliance().db, cursor=cursor, limit=limit, **given), limit)


@bp.get("/replies/<int:reply_id>")
@require("viewer")
def get(reply_id: int):
    return jsonify(inbox.get(appliance().db, reply_id))


@bp.patch("/replies/<int:reply_id>")
@require("viewer")
def mark(reply_id: int):
    body = json_body()
    if "unread" not in body:
        raise ValidationError({"unread": "Say whether the message is unread: true or false."})
    return jsonify(inbox.set_unread(appliance().db, current(), reply_id, body["unread"]))


@bp.post("/replies/<int:reply_id>/respond")
@require("member")
def respond(reply_id: int):
    app = appliance()
    return jsonify(inbox_reply.respond(app.db, app.keys, current(), reply_id, json_body())), 201


@bp.put("/leads/<int:lead_id>/label")
@require("member")
def label_lead(lead_id: int):
    body = json_body()
    if "label" not in body:
        raise ValidationError({"label": "Give a label name, or null to clear it."})
    return jsonify(inbox_labels.set_lead_label(appliance().db, current(), lead_id, body["label"]))


@bp.get("/inbox-labels")
@require("viewer")
def list_labels():
    return jsonify({"items": inbox_labels.labels(appliance().db), "next_cursor": None})  # a short list, one page


@bp.post("/inbox-labels")
@require("member")
def create_label():
    return jsonify(inbox_labels.create_label(appliance().db, current(), json_body())), 201


@bp.delete("/inbox-labels/<name>")
@require("admin")
def delete_label(name: str):
    return jsonify(inbox_labels.delete_label(appliance().db, current(), name))
