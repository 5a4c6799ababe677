"""/api/v1/mailboxes: connect, list, edit, check and import mailboxes (admins)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.services import mailbox_import, mailboxes
from appliance.services.errors import ValidationError

from ..api_common import UnsupportedMediaType, json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_mailboxes", __name__, url_prefix="/api/v1")


def _with_check(mailbox: dict, check: bool) -> dict:
    if not check:
        return mailbox
    result = mailboxes.check(appliance().db, appliance().keys, mailbox["id"], current().actor())
    return dict(mailboxes.get(appliance().db, mailbox["id"]), check=result)


@bp.get("/mailboxes")
@require("admin", scope="admin")
def list_mailboxes():
    limit, cursor = page_args()
    return page(mailboxes.search(appliance().db, status=request.args.get("status"), tag=request.args.get("tag"),
                                 q=request.args.get("q"), after_id=cursor, limit=limit), limit)


@bp.post("/mailboxes")
@require("admin", scope="admin")
def create():
    """Saves, then runs the live check (skip with ?check=false); the mailbox is kept either
    way, with its health showing what failed."""
    mailbox = mailboxes.create(appliance().db, appliance().keys, current(), json_body())
    return jsonify(_with_check(mailbox, request.args.get("check", "true") != "false")), 201


@bp.get("/mailboxes/<int:mailbox_id>")
@require("admin", scope="admin")
def get(mailbox_id: int):
    body = mailboxes.get(appliance().db, mailbox_id)
    body["credential_reads"] = mailboxes.credential_reads(appliance().db, mailbox_id)
    return jsonify(body)


@bp.patch("/mailboxes/<int:mailbox_id>")
@require("admin", scope="admin")
def update(mailbox_id: int):
    body = json_body()
    if "status" in body:
        raise ValidationError({"status": "Use POST /mailboxes/{id}/pause or /resume to change the status."})
    mailbox, reconnect = mailboxes.update(appliance().db, appliance().keys, current(), mailbox_id, body)
    return jsonify(_with_check(mailbox, reconnect and request.args.get("check", "true") != "false"))


@bp.delete("/mailboxes/<int:mailbox_id>")
@require("admin", scope="admin")
def delete(mailbox_id: int):
    mailboxes.delete(appliance().db, current(), mailbox_id)
    return "", 204


@bp.post("/mailboxes/<int:mailbox_id>/test")
@require("admin", scope="admin")
def test(mailbox_id: int):
    return jsonify(mailboxes.check(appliance().db, appliance().keys, mailbox_id, current().actor()))


@bp.post("/mailboxes/<int:mailbox_id>/pause")
@require("admin", scope="admin")
def pause(mailbox_id: int):
    return jsonify(mailboxes.pause(appliance().db, current(), mailbox_id))


@bp.post("/mailboxes/<int:mailbox_id>/resume")
@require("admin", scope="admin")
def resume(mailbox_id: int):
    mailbox, result = mailboxes.resume(appliance().db, appliance().keys, current(), mailbox_id)
    status = 200 if mailbox["status"] == "active" else 409
    return jsonify(dict(mailbox, check=result)), status


@bp.post("/mailboxes/import")
@require("admin", scope="admin")
def import_csv():
    if request.mimetype not in ("text/csv", "application/csv", "text/plain"):
        raise UnsupportedMediaType("Send the CSV file as the body with Content-Type: text/csv.")
    result = mailbox_import.import_csv(appliance().db, appliance().keys, current(), request.stream,
                                       check=request.args.get("check", "true") != "false")
    return jsonify(result), 200
