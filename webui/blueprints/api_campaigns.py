"""/api/v1/campaigns: sequences, enrolment, launch checks, preview, test sends."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.services import campaigns, messages, test_send
from appliance.services.errors import ValidationError

from ..api_common import MAX_ID, json_body, page, page_args
from ..auth import current, require
from ..context import appliance, public_url

bp = Blueprint("api_campaigns", __name__, url_prefix="/api/v1/campaigns")


@bp.get("")
@require("viewer")
def list_campaigns():
    limit, cursor = page_args()
    status = request.args.get("status") or None
    if status and status not in ("draft", "active", "paused", "completed"):
        raise ValidationError({"status": "Choose draft, active, paused or completed."})
    return page(campaigns.list_campaigns(appliance().db, status=status, after_id=cursor, limit=limit), limit)


@bp.post("")
@require("member")
def create():
    return jsonify(campaigns.create(appliance().db, current(), json_body())), 201


@bp.get("/<int:campaign_id>")
@require("viewer")
def get(campaign_id: int):
    return jsonify(campaigns.get(appliance().db, campaign_id))


@bp.patch("/<int:campaign_id>")
@require("member")
def update(campaign_id: int):
    return jsonify(campaigns.update(appliance().db, current(), campaign_id, json_body()))


@bp.delete("/<int:campaign_id>")
@require("member")
def delete(campaign_id: int):
    campaigns.delete(appliance().db, current(), campaign_id)
    return "", 204


@bp.post("/<int:campaign_id>/leads")
@require("member")
def enroll(campaign_id: int):
    body = json_body()
    if "tag" in body:
        if not isinstance(body["tag"], str) or not body["tag"].strip():
            raise ValidationError({"tag": "Expected a lead tag."})
        return jsonify(campaigns.enroll_tag(appliance().db, current(), campaign_id, body["tag"]))
    return jsonify(campaigns.enroll(appliance().db, current(), campaign_id, body.get("lead_ids")))


@bp.get("/<int:campaign_id>/launch-checks")
@require("viewer")
def launch_checks(campaign_id: int):
    checks = campaigns.launch_checks(appliance().db, campaign_id)
    return jsonify({"ready": all(c["ok"] for c in checks), "checks": checks})


@bp.post("/<int:campaign_id>/launch")
@require("member")
def launch(campaign_id: int):
    return jsonify(campaigns.launch(appliance().db, current(), campaign_id))


@bp.post("/<int:campaign_id>/pause")
@require("member")
def pause(campaign_id: int):
    return jsonify(campaigns.pause(appliance().db, current(), campaign_id))


@bp.post("/<int:campaign_id>/resume")
@require("member")
def resume(campaign_id: int):
    return jsonify(campaigns.resume(appliance().db, current(), campaign_id))


@bp.get("/<int:campaign_id>/preview")
@require("viewer")
def preview(campaign_id: int):
    lead_id = request.args.get("lead_id", type=int)
    if lead_id is None or not 1 <= lead_id <= MAX_ID:
        raise ValidationError({"lead_id": "Choose a lead to preview with (?lead_id=)."})
    steps = campaigns.preview(appliance().db, appliance().keys, campaign_id, lead_id, public_url())
    return jsonify({"lead_id": lead_id, "steps": steps})


@bp.get("/<int:campaign_id>/stats")
@require("viewer")
def stats(campaign_id: int):
    return jsonify(messages.stats(appliance().db, campaign_id))


@bp.post("/<int:campaign_id>/test-send")
@require("member")
def send_test(campaign_id: int):
    body = json_body()
    result = test_send.send(appliance().db, appliance().keys, current(), campaign_id, body, public_url())
    return jsonify(result)
