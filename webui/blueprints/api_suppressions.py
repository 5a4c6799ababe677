"""/api/v1/suppressions: the suppression list (viewers read, members add and import,
admins remove)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from appliance.services import suppression_files, suppressions
from appliance.services.errors import ValidationError

from ..api_common import UnsupportedMediaType, json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_suppressions", __name__, url_prefix="/api/v1/suppressions")


def _filters() -> dict:
    return {name: request.args.get(name) for name in ("kind", "reason", "q")}


@bp.get("")
@require("viewer", scope="read")
def list_entries():
    """Newest first; filters ?kind=email|domain, ?reason=, ?q= (part of the value or source)."""
    limit, cursor = page_args()
    return page(suppressions.search(appliance().db, before_id=cursor, limit=limit, **_filters()), limit)


@bp.post("")
@require("member", scope="write")
def add():
    """201 with the new entry; 200 with the existing one (`created: false`) when the value
    is already on the list."""
    entry, created = suppressions.add(appliance().db, current(), json_body())
    return jsonify(entry), 201 if created else 200


@bp.get("/check")
@require("viewer", scope="read")
def check():
    """?email=: is this address suppressed, and by which entry (itself or a domain)?"""
    return jsonify(suppressions.check(appliance().db, request.args.get("email", "")))


@bp.get("/<int:suppression_id>")
@require("viewer", scope="read")
def get(suppression_id: int):
    return jsonify(suppressions.get(appliance().db, suppression_id))


@bp.delete("/<int:suppression_id>")
@require("admin", scope="admin")
def delete(suppression_id: int):
    """Optional `?note=` (or a JSON body `{"note": ...}`): why, kept in the audit log."""
    note = request.args.get("note", "")
    if request.is_json and request.content_length:
        body = json_body()
        note = body.get("note") or note
        if not isinstance(note, str):
            raise ValidationError({"note": "Expected a string."})
    suppressions.delete(appliance().db, current(), suppression_id, note)
    return "", 204


@bp.post("/import")
@require("member", scope="write")
def import_csv():
    """CSV body (text/csv). ?reason= and ?source= apply to rows without their own."""
    if request.mimetype not in ("text/csv", "application/csv", "text/plain"):
        raise UnsupportedMediaType("Send the CSV file as the body with Content-Type: text/csv.")
    result = suppression_files.import_csv(appliance().db, current(), request.stream,
                                          reason=request.args.get("reason"), source=request.args.get("source"))
    return jsonify(result), 200


@bp.get("/export")
@require("viewer", scope="read")
def export():
    """The list (same filters as the listing) as CSV, formula-escaped, streamed."""
    chunks = suppression_files.start_export(appliance().db, current(), _filters())
    response = Response(chunks, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="mailflow-suppressions.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response
