"""Pages: Mailboxes (list, connect form with presets, detail with health, CSV import)."""

from __future__ import annotations

import json
from dataclasses import asdict

from flask import Blueprint, abort, redirect, render_template, request, url_for

from appliance.mail.providers import CUSTOM, PRESETS
from appliance.services import jobs, mailbox_import, mailboxes
from appliance.services.errors import ServiceError, ValidationError

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_mailboxes", __name__, url_prefix="/mailboxes")
PAGE = 50
BOOLEANS = ("sending_enabled", "save_sent_copy")
TEXT_FIELDS = ("provider", "email", "display_name", "username", "password", "smtp_host", "smtp_port",
               "smtp_security", "imap_host", "imap_port", "imap_security", "reply_to", "signature", "tags",
               "daily_limit", "min_gap_seconds", "max_gap_seconds", "ramp_start", "ramp_step")


def preset_view() -> dict:
    """Provider choices for the form, and the presets as JSON for static/js/presets.js."""
    options = [(p.key, p.label) for p in PRESETS.values()] + [(CUSTOM, "Other (any IMAP/SMTP host)")]
    data = {p.key: {**asdict(p)} for p in PRESETS.values()}
    return {"options": options, "json": json.dumps(data)}


def form_data(is_edit: bool) -> dict:
    """The posted form as service input. Checkboxes send nothing when off, so they are read
    as present/absent; the TLS trust radio decides which of CA bundle / pin is kept."""
    data = {name: request.form.get(name, "") for name in TEXT_FIELDS if name in request.form}
    for name in BOOLEANS:
        data[name] = name in request.form
    mode = request.form.get("tls_mode", "system")
    data["tls_ca_pem"] = request.form.get("tls_ca_pem", "") if mode == "ca" else None
    data["tls_pin_sha256"] = request.form.get("tls_pin_sha256", "") if mode == "pin" else None
    if mode == "ca" and not data["tls_ca_pem"].strip():
        raise ValidationError({"tls_ca_pem": "Paste the CA certificate(s) in PEM format."})
    if mode == "pin" and not (data["tls_pin_sha256"] or "").strip():
        raise ValidationError({"tls_pin_sha256": "Enter the SHA-256 fingerprint of the server certificate."})
    if is_edit and not data.get("provider"):
        data.pop("provider", None)
    return data


@bp.get("")
@require("admin")
def index():
    args = {k: request.args.get(k) or None for k in ("status", "tag", "q")}
    cursor = request.args.get("cursor", type=int) or 0
    try:
        items = mailboxes.search(appliance().db, after_id=cursor, limit=PAGE, **args)
    except ValidationError:
        abort(400)
    next_cursor = items[-1]["id"] if len(items) == PAGE else None
    return render_template("mailboxes.html", items=items, args=args, next_cursor=next_cursor,
                           overview=mailboxes.overview(appliance().db))


@bp.route("/new", methods=["GET", "POST"])
@require("admin")
def new():
    form, errors = {"provider": "gmail", "sending_enabled": True, "smtp_security": "ssl",
                    "imap_security": "ssl", "daily_limit": 30, "min_gap_seconds": 300,
                    "max_gap_seconds": 900, "tls_mode": "system"}, {}
    if request.method == "POST":
        form = dict(request.form, sending_enabled="sending_enabled" in request.form,
                    save_sent_copy="save_sent_copy" in request.form)
        try:
            mailbox = mailboxes.create(appliance().db, appliance().keys, current(), form_data(False))
            mailboxes.check(appliance().db, appliance().keys, mailbox["id"], current().actor())
            return redirect(url_for("ui_mailboxes.detail", mailbox_id=mailbox["id"], checked=1))
        except ValidationError as exc:
            errors = exc.fields
        except ServiceError as exc:
            errors = {"email": exc.message}
    return render_template("mailbox_form.html", form=form, errors=errors, presets=preset_view(), mailbox=None), \
        400 if errors else 200


@bp.route("/<int:mailbox_id>", methods=["GET", "POST"])
@require("admin")
def detail(mailbox_id: int):
    mailbox = mailboxes.get(appliance().db, mailbox_id)
    form = dict(mailbox, tags=", ".join(mailbox["tags"]), tls_mode=mailbox["tls"]["mode"],
                tls_pin_sha256=mailbox["tls"].get("pinned_sha256", ""))
    errors = {}
    if request.method == "POST":
        form = dict(form, **request.form, sending_enabled="sending_enabled" in request.form,
                    save_sent_copy="save_sent_copy" in request.form)
        try:
            mailbox, reconnect = mailboxes.update(appliance().db, appliance().keys, current(), mailbox_id,
                                                  form_data(True))
            if reconnect:
                mailboxes.check(appliance().db, appliance().keys, mailbox_id, current().actor())
            return redirect(url_for("ui_mailboxes.detail", mailbox_id=mailbox_id, saved=1, checked=int(reconnect)))
        except ValidationError as exc:
            errors = exc.fields
    return render_template("mailbox_detail.html", mailbox=mailbox, form=form, errors=errors, presets=preset_view(),
                           reads=mailboxes.credential_reads(appliance().db, mailbox_id),
                           activity=mailboxes.recent_activity(appliance().db, mailbox_id),
                           saved=request.args.get("saved")), 400 if errors else 200


@bp.post("/<int:mailbox_id>/test")
@require("admin")
def test(mailbox_id: int):
    mailboxes.check(appliance().db, appliance().keys, mailbox_id, current().actor())
    return redirect(url_for("ui_mailboxes.detail", mailbox_id=mailbox_id, checked=1))


@bp.post("/<int:mailbox_id>/pause")
@require("admin")
def pause(mailbox_id: int):
    mailboxes.pause(appliance().db, current(), mailbox_id)
    return redirect(url_for("ui_mailboxes.detail", mailbox_id=mailbox_id))


@bp.post("/<int:mailbox_id>/resume")
@require("admin")
def resume(mailbox_id: int):
    mailboxes.resume(appliance().db, appliance().keys, current(), mailbox_id)
    return redirect(url_for("ui_mailboxes.detail", mailbox_id=mailbox_id, checked=1))


@bp.post("/<int:mailbox_id>/delete")
@require("admin")
def delete(mailbox_id: int):
    mailboxes.delete(appliance().db, current(), mailbox_id)
    return redirect(url_for("ui_mailboxes.index"))


@bp.route("/import", methods=["GET", "POST"])
@require("admin")
def import_csv():
    result, error = None, None
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = "Choose a CSV file."
        else:
            try:
                result = mailbox_import.import_csv(appliance().db, appliance().keys, current(), upload.stream,
                                                   check="check" in request.form)
            except ServiceError as exc:
                error = exc.message
    return render_template("mailbox_import.html", result=result, error=error), 400 if error else 200


@bp.get("/jobs/<int:job_id>")
@require("admin")
def job(job_id: int):
    return render_template("job.html", job=jobs.get(appliance().db, job_id, current()))
