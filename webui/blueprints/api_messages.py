"""/api/v1/messages and /api/v1/queue: outbound messages with their status, the upcoming
sends, and a person's decision on an uncertain send."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.services import messages
from appliance.services.errors import ValidationError

from ..api_common import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_messages", __name__, url_prefix="/api/v1")


def id_arg(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
        raise ValidationError({name: "Expected a whole number (an id)."})
    return int(value)


@bp.get("/messages")
@require("viewer")
def list_messages():
    """Newest first; the cursor is the last id of the previous page."""
    limit, cursor = page_args()
    items = messages.search(appliance().db, campaign_id=id_arg("campaign_id"), lead_id=id_arg("lead_id"),
                            status=request.args.get("status") or None, mailbox_id=id_arg("mailbox_id"),
                            cursor=cursor, limit=limit)
    return page(items, limit)


@bp.get("/messages/<int:message_id>")
@require("viewer")
def get(message_id: int):
    return jsonify(messages.get(appliance().db, message_id))


@bp.post("/messages/<int:message_id>/resolve")
@require("member")
def resolve(message_id: int):
    body = json_body()
    if "sent" not in body:
        raise ValidationError({"sent": "Say whether it was sent: true, or false to send it again."})
    return jsonify(messages.resolve_uncertain(appliance().db, current(), message_id, body["sent"]))


@bp.get("/queue")
@require("viewer")
def queue():
    """Upcoming sends in the order they are due; the cursor is opaque."""
    limit = limit_arg()
    items = messages.queue(appliance().db, mailbox_id=id_arg("mailbox_id"), limit=limit,
                           cursor=request.args.get("cursor") or None)
    return page(items, limit, cursor_of=messages.queue_cursor)


def limit_arg() -> int:
    """?limit= as everywhere (the queue's cursor is not an id: the service reads it)."""
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ValidationError({"limit": "limit must be a whole number."}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError({"limit": f"limit must be between 1 and {MAX_LIMIT}."})
    return limit
