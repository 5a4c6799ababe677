"""/api/v1/audit-log: admins read and export the tamper-evident audit log."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from appliance.services import audit

from ..api_common import page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_audit", __name__, url_prefix="/api/v1/audit-log")


def request_filters() -> dict:
    """?action=&actor=&since=&until= checked (400 in the API error format otherwise)."""
    return audit.parse_filters(**{name: request.args.get(name) for name in audit.FILTERS})


@bp.get("")
@require("admin", scope="admin")
def list_entries():
    """Newest first; `next_cursor` is the id to continue below (`?cursor=`), null on the last page."""
    filters = request_filters()
    limit, cursor = page_args()
    items, next_cursor = audit.list_page(appliance().db, limit=limit, before_id=cursor, **filters)
    return jsonify({"items": items, "next_cursor": None if next_cursor is None else str(next_cursor)})


@bp.get("/export")
@require("admin", scope="admin")
def export():
    """Every entry matching the filters, streamed as CSV (formula-escaped) or JSON. The export
    itself is recorded (`audit.exported`) and covers the entries written before it."""
    filters = request_filters()
    fmt = (request.args.get("format") or "csv").strip().lower()
    started = audit.start_export(appliance().db, current(), fmt, filters)
    response = Response(started.chunks(), mimetype=started.mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{started.filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
