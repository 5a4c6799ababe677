"""/api/v1/api-keys: create (the secret is in the create response, once), list, revoke.

Admins see and revoke everyone's keys; other users their own (the service decides). Creating
a key through an API key needs that key's admin scope.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from appliance.services import api_keys
from appliance.services.errors import ValidationError

from ..api_common import json_body, page, page_args, text_field
from ..auth import current, require
from ..context import appliance

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys")


def scopes_field(body: dict) -> list[str]:
    value = body.get("scopes", ["read"])
    if value is None:
        return ["read"]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValidationError({"scopes": "Expected a list of scopes, like [\"read\", \"write\"]."})
    return value


@bp.get("")
@require("viewer")
def list_keys():
    limit, cursor = page_args()
    return page(api_keys.list_keys(appliance().db, current(), after_id=cursor, limit=limit), limit)


@bp.post("")
@require("viewer", scope="admin")
def create():
    body = json_body()
    key = api_keys.create(appliance().db, current(), name=text_field(body, "name"), scopes=scopes_field(body),
                          cost=appliance().config.bcrypt_cost)
    return jsonify(key), 201


@bp.delete("/<int:key_id>")
@require("viewer")
def revoke(key_id: int):
    api_keys.revoke(appliance().db, current(), key_id)
    return "", 204
