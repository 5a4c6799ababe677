"""Settings → Users: invite, change roles, disable (admins)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.services import users
from appliance.services.authz import ROLES
from appliance.services.errors import ServiceError, ValidationError

from ..auth import current, require
from ..context import appliance, public_url

bp = Blueprint("ui_users", __name__, url_prefix="/settings/users")


def render(errors=None, form=None, invite_url=None, status=200, message=None):
    return render_template("users.html", users=users.list_users(appliance().db, limit=500),
                           roles=[r for r in ROLES if r != "owner"], errors=errors or {},
                           form=form or {"role": "member"}, invite_url=invite_url, message=message), status


@bp.get("")
@require("admin")
def index():
    return render()


@bp.post("/invite")
@require("admin")
def invite():
    form = {k: request.form.get(k, "") for k in ("email", "name", "role")}
    try:
        _, token = users.invite(appliance().db, current(), email=form["email"], role=form["role"],
                                name=form["name"], ttl_hours=appliance().config.invite_ttl_hours)
    except ValidationError as exc:
        return render(errors=exc.fields, form=form, status=400)
    except ServiceError as exc:
        return render(errors={"email": exc.message}, form=form, status=exc.status)
    url = public_url() + url_for("ui_auth.accept_invite", token=token)
    return render(invite_url=url)


@bp.post("/<int:user_id>")
@require("admin")
def update(user_id: int):
    fields = {k: request.form[k] for k in ("role", "status") if request.form.get(k)}
    try:
        users.update(appliance().db, current(), user_id, **fields)
    except ServiceError as exc:
        return render(message=exc.message, status=exc.status)
    return redirect(url_for("ui_users.index"))
