"""/api/v1/leads: list, read, create, edit, delete, import (CSV body) and export (CSV).
Everyone signed in reads; members and above write."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from appliance.services import lead_import, leads

from ..api_common import UnsupportedMediaType, json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_leads", __name__, url_prefix="/api/v1")
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")


def _filters() -> dict:
    return {name: request.args.get(name) for name in ("status", "tag", "q")}


@bp.get("/leads")
@require("viewer")
def list_leads():
    """Newest first; `?status=`, `?tag=`, `?q=` (address, name or company; `@example.com` for a
    whole domain), `?limit=`, `?cursor=`."""
    limit, cursor = page_args()
    return page(leads.search(appliance().db, **_filters(), before_id=cursor, limit=limit), limit)


@bp.post("/leads")
@require("member")
def create():
    return jsonify(leads.create(appliance().db, current(), json_body())), 201


@bp.get("/leads/<int:lead_id>")
@require("viewer")
def get(lead_id: int):
    return jsonify(leads.get(appliance().db, lead_id))


@bp.patch("/leads/<int:lead_id>")
@require("member")
def update(lead_id: int):
    return jsonify(leads.update(appliance().db, current(), lead_id, json_body()))


@bp.delete("/leads/<int:lead_id>")
@require("member")
def delete(lead_id: int):
    leads.delete(appliance().db, current(), lead_id)
    return "", 204


@bp.post("/leads/import")
@require("member")
def import_csv():
    """The CSV file as the body. `?mode=skip|merge` for addresses already known, `?tag=` added
    to every imported lead, `?source=` for rows without their own, `?columns=` the import page's
    column mapping (where each column goes, in order; default: guessed from the header)."""
    if request.mimetype not in CSV_TYPES:
        raise UnsupportedMediaType("Send the CSV file as the body with Content-Type: text/csv.")
    result = lead_import.import_csv(appliance().db, current(), request.stream, mode=request.args.get("mode"),
                                    tag=request.args.get("tag"), source=request.args.get("source"),
                                    mapping=column_mapping(request.args.get("columns")))
    return jsonify(result), 200


def column_mapping(text: str | None) -> dict[int, str | None] | None:
    """`email,first_name,,custom:region` -> {0: "email", 1: "first_name", 2: None, 3: "custom:region"}:
    a blank skips that column, and so does leaving it off the end."""
    if text is None:
        return None
    return {index: target.strip() or None for index, target in enumerate(text.split(","))}


@bp.get("/leads/export")
@require("viewer")
def export():
    """Every lead matching the list's filters as CSV (formula-escaped), streamed."""
    job = leads.start_export(appliance().db, current(), **_filters())
    return Response(stream_with_context(job.chunks()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{job.filename}"',
                             "Cache-Control": "no-store"})
