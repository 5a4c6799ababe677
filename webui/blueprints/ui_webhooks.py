"""Settings → Webhooks (admins): list, create (the secret is shown once), edit, enable or
disable, send a test event, rotate the secret, the delivery log, and the private-network
setting of the SSRF guard. Pages showing a secret are never cached."""

from __future__ import annotations

from flask import Blueprint, make_response, redirect, render_template, request, url_for

from appliance.services import webhook_delivery, webhooks
from appliance.services.errors import ServiceError, ValidationError
from appliance.services.webhook_input import DEFAULT_GRACE_HOURS, EVENT_DESCRIPTIONS

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_webhooks", __name__, url_prefix="/settings/webhooks")

PAGE_SIZE = 100
LOG_SIZE = 50


def _cursor() -> int:
    try:
        return max(0, int(request.args.get("cursor") or 0))
    except ValueError:
        return 0


def _no_store(body, status: int = 200):
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _form() -> dict:
    return {"url": request.form.get("url", ""), "description": request.form.get("description", ""),
            "events": request.form.getlist("events")}


def render_index(*, errors=None, form=None, created=None, message=None, status=200):
    cursor = _cursor()
    hooks = webhooks.list_webhooks(appliance().db, current(), after_id=cursor, limit=PAGE_SIZE)
    return _no_store(render_template(
        "webhooks.html", hooks=hooks, cursor=cursor, next_cursor=hooks[-1]["id"] if len(hooks) == PAGE_SIZE else None,
        events=EVENT_DESCRIPTIONS, errors=errors or {}, form=form or {"url": "", "description": "", "events": []},
        created=created, message=message, done=request.args.get("done"),
        settings=webhooks.get_settings(appliance().db, current()),
        allow_loopback=bool(appliance().config.webhook_allow_loopback)), status)


@bp.get("")
@require("admin")
def index():
    return render_index()


@bp.post("")
@require("admin")
def create():
    form = _form()
    app = appliance()
    try:
        created = webhooks.create(app.db, app.keys, app.config, current(), form)
    except ValidationError as exc:
        return render_index(errors=exc.fields, form=form, status=400)
    return render_index(created=created)


@bp.post("/settings")
@require("admin")
def save_settings():
    webhooks.save_settings(appliance().db, current(),
                           {"allow_private_networks": request.form.get("allow_private_networks") == "on"})
    return redirect(url_for("ui_webhooks.index", done="settings"))


def render_detail(webhook_id: int, *, errors=None, form=None, secret=None, test=None, status=200):
    db = appliance().db
    hook = webhooks.get(db, current(), webhook_id)
    cursor = _cursor()
    log = webhook_delivery.delivery_log(db, current(), webhook_id, before_id=cursor or None, limit=LOG_SIZE)
    return _no_store(render_template(
        "webhook_detail.html", hook=hook, log=log, cursor=cursor,
        next_cursor=log[-1]["id"] if len(log) == LOG_SIZE else None, events=EVENT_DESCRIPTIONS,
        errors=errors or {}, form=form or hook, secret=secret, test=test, saved=request.args.get("saved"),
        grace_hours=DEFAULT_GRACE_HOURS), status)


@bp.get("/<int:webhook_id>")
@require("admin")
def detail(webhook_id: int):
    return render_detail(webhook_id)


@bp.post("/<int:webhook_id>")
@require("admin")
def save(webhook_id: int):
    form = _form()
    try:
        webhooks.update(appliance().db, appliance().config, current(), webhook_id, form)
    except ValidationError as exc:
        return render_detail(webhook_id, errors=exc.fields, form=form, status=400)
    return redirect(url_for("ui_webhooks.detail", webhook_id=webhook_id, saved="settings"))


@bp.post("/<int:webhook_id>/enable")
@require("admin")
def enable(webhook_id: int):
    webhooks.update(appliance().db, appliance().config, current(), webhook_id, {"enabled": True})
    return redirect(url_for("ui_webhooks.detail", webhook_id=webhook_id, saved="enabled"))


@bp.post("/<int:webhook_id>/disable")
@require("admin")
def disable(webhook_id: int):
    webhooks.update(appliance().db, appliance().config, current(), webhook_id, {"enabled": False})
    return redirect(url_for("ui_webhooks.detail", webhook_id=webhook_id, saved="disabled"))


@bp.post("/<int:webhook_id>/test")
@require("admin")
def send_test(webhook_id: int):
    app = appliance()
    result = webhook_delivery.send_test(app.db, app.keys, webhook_delivery.policy_for(app.db, app.config),
                                        current(), webhook_id)
    return render_detail(webhook_id, test=result)


@bp.post("/<int:webhook_id>/rotate")
@require("admin")
def rotate(webhook_id: int):
    try:
        rotated = webhooks.rotate_secret(appliance().db, appliance().keys, current(), webhook_id,
                                         request.form.get("grace_hours"))
    except ValidationError as exc:
        return render_detail(webhook_id, errors=exc.fields, status=400)
    return render_detail(webhook_id, secret=rotated["secret"])


@bp.post("/<int:webhook_id>/delete")
@require("admin")
def delete(webhook_id: int):
    try:
        webhooks.delete(appliance().db, current(), webhook_id)
    except ServiceError as exc:
        return render_index(message=exc.message, status=exc.status)
    return redirect(url_for("ui_webhooks.index", done="deleted"))
