"""/api/v1/webhooks: outbound webhooks (admins, with an API key's admin scope).

The secret is in the create and rotate-secret responses only. The private-network setting of
the SSRF guard is /api/v1/settings/webhooks.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from appliance.services import webhook_delivery, webhooks

from ..api_common import json_body, page, page_args
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_webhooks", __name__, url_prefix="/api/v1")


def _policy():
    return webhook_delivery.policy_for(appliance().db, appliance().config)


@bp.get("/webhooks")
@require("admin", scope="admin")
def list_webhooks():
    limit, cursor = page_args()
    return page(webhooks.list_webhooks(appliance().db, current(), after_id=cursor, limit=limit), limit)


@bp.post("/webhooks")
@require("admin", scope="admin")
def create():
    app = appliance()
    return jsonify(webhooks.create(app.db, app.keys, app.config, current(), json_body())), 201


@bp.get("/webhooks/<int:webhook_id>")
@require("admin", scope="admin")
def get(webhook_id: int):
    return jsonify(webhooks.get(appliance().db, current(), webhook_id))


@bp.patch("/webhooks/<int:webhook_id>")
@require("admin", scope="admin")
def update(webhook_id: int):
    return jsonify(webhooks.update(appliance().db, appliance().config, current(), webhook_id, json_body()))


@bp.delete("/webhooks/<int:webhook_id>")
@require("admin", scope="admin")
def delete(webhook_id: int):
    webhooks.delete(appliance().db, current(), webhook_id)
    return "", 204


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@require("admin", scope="admin")
def deliveries(webhook_id: int):
    limit, cursor = page_args()
    return page(webhook_delivery.delivery_log(appliance().db, current(), webhook_id,
                                              status=request.args.get("status") or None,
                                              before_id=cursor or None, limit=limit), limit)


@bp.post("/webhooks/<int:webhook_id>/test")
@require("admin", scope="admin")
def send_test(webhook_id: int):
    return jsonify(webhook_delivery.send_test(appliance().db, appliance().keys, _policy(), current(), webhook_id))


@bp.post("/webhooks/<int:webhook_id>/rotate-secret")
@require("admin", scope="admin")
def rotate_secret(webhook_id: int):
    body = json_body() if request.content_length else {}
    return jsonify(webhooks.rotate_secret(appliance().db, appliance().keys, current(), webhook_id,
                                          body.get("grace_hours")))


@bp.get("/settings/webhooks")
@require("admin", scope="admin")
def get_settings():
    return jsonify(webhooks.get_settings(appliance().db, current()))


@bp.put("/settings/webhooks")
@require("admin", scope="admin")
def save_settings():
    return jsonify(webhooks.save_settings(appliance().db, current(), json_body()))
