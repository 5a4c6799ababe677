"""Suppression list page: filter and page through it, add an entry, upload a CSV, export,
remove (admins, with a confirmation step and a note for the audit log)."""

from __future__ import annotations

from flask import Blueprint, flash, get_flashed_messages, redirect, render_template, request, url_for

from appliance.services import suppression_files, suppressions
from appliance.services.errors import NotFound, ServiceError, ValidationError
from appliance.services.ids import id_from_text
from appliance.services.users import email_problem

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_suppressions", __name__, url_prefix="/suppressions")
PAGE = 50
FILTERS = ("q", "kind", "reason")
ADD_DEFAULTS = {"value": "", "reason": "manual", "source": ""}
IMPORT_DEFAULTS = {"reason": "manual", "source": ""}


def _cursor(name: str = "cursor") -> int | None:
    value = request.args.get(name, "")
    return id_from_text(value)


def render(*, form=None, errors=None, import_form=None, import_errors=None, import_result=None,
           confirm=None, confirm_errors=None, message=None, status=200):
    db = appliance().db
    args = {name: request.args.get(name, "") for name in FILTERS}
    active = {name: value.strip() for name, value in args.items() if value.strip()}
    filter_errors, items, next_cursor, lookup = {}, [], None, None
    try:
        rows = suppressions.search(db, before_id=_cursor(), limit=PAGE + 1, **active)
    except ValidationError as exc:
        filter_errors = exc.fields
        status = max(status, 400)
    else:
        items = rows[:PAGE]
        next_cursor = items[-1]["id"] if len(rows) > PAGE else None
        if active.get("q") and not email_problem(active["q"].lower()):
            lookup = suppressions.check(db, active["q"])
    return render_template(
        "suppressions.html", items=items, args=args, active=active, filter_errors=filter_errors,
        next_cursor=next_cursor, paged=_cursor() is not None, lookup=lookup,
        overview=suppressions.overview(db), reasons=suppressions.REASONS, kinds=suppressions.KINDS,
        form=form or dict(ADD_DEFAULTS), errors=errors or {},
        import_form=import_form or dict(IMPORT_DEFAULTS), import_errors=import_errors or {},
        import_result=import_result, confirm=confirm, confirm_errors=confirm_errors or {},
        message=message or _flash_message()), status


def _flash_message() -> str | None:
    """The outcome of the change that redirected here (kept in the signed session cookie)."""
    messages = get_flashed_messages()
    return messages[-1] if messages else None


@bp.get("")
@require("viewer")
def index():
    confirm = None
    remove_id = _cursor("remove")
    if remove_id and current().has_role("admin"):
        try:
            confirm = suppressions.get(appliance().db, remove_id)
        except NotFound:
            confirm = None
    return render(confirm=confirm)


@bp.post("")
@require("member")
def add():
    form = {name: request.form.get(name, "") for name in ADD_DEFAULTS}
    try:
        entry, created = suppressions.add(appliance().db, current(), form)
    except ValidationError as exc:
        return render(form=form, errors=exc.fields, status=400)
    flash(f"{entry['value']} is now on the suppression list." if created else
          f"{entry['value']} was already on the suppression list ({entry['reason']}); the first entry is kept.")
    return redirect(url_for("ui_suppressions.index"))


@bp.post("/import")
@require("member")
def import_csv():
    form = {name: request.form.get(name, "") for name in IMPORT_DEFAULTS}
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render(import_form=form, import_errors={"file": "Choose a CSV file."}, status=400)
    try:
        result = suppression_files.import_csv(appliance().db, current(), upload.stream, reason=form["reason"],
                                              source=form["source"] or upload.filename[:100])
    except ValidationError as exc:
        return render(import_form=form, import_errors=exc.fields, status=400)
    except ServiceError as exc:
        return render(import_form=form, import_errors={"file": exc.message}, status=exc.status)
    return render(import_form=form, import_result=result)


@bp.post("/<int:suppression_id>/delete")
@require("admin")
def delete(suppression_id: int):
    note = request.form.get("note", "")
    try:
        entry = suppressions.delete(appliance().db, current(), suppression_id, note)
    except ValidationError as exc:
        return render(confirm=suppressions.get(appliance().db, suppression_id), confirm_errors=exc.fields,
                      status=400)
    flash(f"{entry['value']} was removed from the suppression list.")
    return redirect(url_for("ui_suppressions.index"))
