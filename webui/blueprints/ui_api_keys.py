"""Settings → API keys: create (the key is shown once), list, revoke.

Everyone signed in manages their own keys; admins see and revoke everyone's (the service
decides). The page showing a new key is never cached and never redirected to: the key exists
only in that one response.
"""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for

from appliance.services import api_keys
from appliance.services.errors import PermissionDenied, ServiceError, ValidationError

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_api_keys", __name__, url_prefix="/settings/api-keys")

PAGE_SIZE = 100


def render(*, errors=None, form=None, created=None, message=None, done=None, status=200):
    try:
        cursor = max(0, int(request.args.get("cursor") or 0))
    except ValueError:
        cursor = 0
    keys = api_keys.list_keys(appliance().db, current(), after_id=cursor, limit=PAGE_SIZE)
    next_cursor = keys[-1]["id"] if len(keys) == PAGE_SIZE else None
    response = make_response(render_template(
        "api_keys.html", keys=keys, next_cursor=next_cursor, cursor=cursor,
        scopes=api_keys.grantable_scopes(current()), errors=errors or {},
        form=form or {"name": "", "scopes": ["read"]}, created=created, message=message, done=done,
        show_owner=current().has_role("admin")), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
@require("viewer")
def index():
    return render(done=request.args.get("done"))


@bp.post("")
@require("viewer")
def create():
    form = {"name": request.form.get("name", ""), "scopes": request.form.getlist("scopes")}
    try:
        created = api_keys.create(appliance().db, current(), name=form["name"], scopes=form["scopes"],
                                  cost=appliance().config.bcrypt_cost)
    except ValidationError as exc:
        return render(errors=exc.fields, form=form, status=400)
    except PermissionDenied as exc:
        return render(errors={"scopes": exc.message}, form=form, status=exc.status)
    return render(created=created)


@bp.post("/<int:key_id>/revoke")
@require("viewer")
def revoke(key_id: int):
    try:
        api_keys.revoke(appliance().db, current(), key_id)
    except ServiceError as exc:
        return render(message=exc.message, status=exc.status)
    return redirect(url_for("ui_api_keys.index", done="revoked"))
