"""Settings → Sender identity: the company name, postal address and website printed in
every message footer (admins edit; everyone signed in can see it)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from appliance.services import sender_identity
from appliance.services.errors import ValidationError

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_settings", __name__, url_prefix="/settings")


def render(form: dict, errors: dict | None = None, status: int = 200):
    saved = sender_identity.get(appliance().db)
    return render_template("sender_identity.html", form=form, errors=errors or {},
                           problems=sender_identity.problems(saved),
                           preview=sender_identity.footer_text(form),
                           can_edit=current().has_role("admin"),
                           saved=request.args.get("saved")), status


@bp.get("/sender-identity")
@require("viewer")
def sender_identity_page():
    return render(sender_identity.get(appliance().db))


@bp.post("/sender-identity")
@require("admin")
def save_sender_identity():
    form = {name: request.form.get(name, "") for name in sender_identity.FIELDS}
    try:
        sender_identity.save(appliance().db, current(), form)
    except ValidationError as exc:
        return render(form, exc.fields, 400)
    return redirect(url_for("ui_settings.sender_identity_page", saved=1))
