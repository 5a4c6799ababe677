"""/api/v1/users: admins manage people and roles."""

from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from appliance.services import users

from ..api_common import json_body, page, page_args, text_field
from ..auth import current, require
from ..context import appliance, public_url

bp = Blueprint("api_users", __name__, url_prefix="/api/v1/users")


@bp.get("")
@require("admin", scope="admin")
def list_users():
    limit, cursor = page_args()
    return page(users.list_users(appliance().db, after_id=cursor, limit=limit), limit)


@bp.post("")
@require("admin", scope="admin")
def invite():
    body = json_body()
    user, token = users.invite(appliance().db, current(), email=text_field(body, "email"),
                               role=text_field(body, "role", required=False, default="member"),
                               name=text_field(body, "name", required=False),
                               ttl_hours=appliance().config.invite_ttl_hours)
    user["invite_url"] = public_url() + url_for("ui_auth.accept_invite", token=token)
    return jsonify(user), 201


@bp.patch("/<int:user_id>")
@require("admin", scope="admin")
def update(user_id: int):
    body = json_body()
    fields = {k: text_field(body, k) for k in ("role", "status", "name") if k in body}
    return jsonify(users.update(appliance().db, current(), user_id, **fields))


@bp.delete("/<int:user_id>")
@require("admin", scope="admin")
def delete(user_id: int):
    users.delete(appliance().db, current(), user_id)
    return "", 204
