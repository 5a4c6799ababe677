"""Pages: Leads (list with search, filters and pages; add and edit; CSV import with column
mapping, preview and a progress bar for large files)."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from appliance.services import jobs, lead_columns, lead_import, leads, uploads
from appliance.services.errors import NotFound, ServiceError, ValidationError
from appliance.services.lead_input import CONSENTS, RESERVED, STATUSES, custom_key

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_leads", __name__, url_prefix="/leads")
PAGE = 50
TEXT_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "website", "timezone", "status",
               "consent", "source", "tags")
MAX_CUSTOM_ROWS = 60
BLANK_CUSTOM_ROWS = 3


def _data_dir():
    return appliance().config.data_dir


# -- list and edit ---------------------------------------------------------------------------

@bp.get("")
@require("viewer")
def index():
    args = {k: request.args.get(k) or None for k in ("status", "tag", "q")}
    cursor = request.args.get("cursor", type=int) or 0
    try:
        items = leads.search(appliance().db, before_id=cursor, limit=PAGE, **args)
    except ValidationError:
        abort(400)
    next_cursor = items[-1]["id"] if len(items) == PAGE else None
    return render_template("leads.html", items=items, args=args, next_cursor=next_cursor, cursor=cursor,
                           overview=leads.overview(appliance().db), statuses=STATUSES,
                           export_args={k: v for k, v in args.items() if v})


def _custom_rows(custom: dict) -> list[tuple[str, str]]:
    return list(custom.items()) + [("", "")] * BLANK_CUSTOM_ROWS


def _posted_custom_rows() -> list[tuple[str, str]]:
    rows = []
    for i in range(MAX_CUSTOM_ROWS):
        if f"custom_key_{i}" not in request.form:
            break
        rows.append((request.form.get(f"custom_key_{i}", ""), request.form.get(f"custom_value_{i}", "")))
    return rows


def form_data(existing_custom: dict) -> dict:
    """The posted form as service input: custom fields are rows of name and value; a row
    emptied or removed deletes that field."""
    data = {name: request.form.get(name, "") for name in TEXT_FIELDS if name in request.form}
    custom: dict = {}
    for key, value in _posted_custom_rows():
        if key.strip():
            custom[key] = value
        elif value.strip():
            raise ValidationError({"custom": "Give every custom value a field name."})
    kept = {custom_key(k) for k in custom}
    custom.update({k: None for k in existing_custom if k not in kept})
    data["custom"] = custom
    return data


def _render_form(lead, form, errors, custom_rows, status=200):
    return render_template("lead_detail.html", lead=lead, form=form, errors=errors, custom_rows=custom_rows,
                           statuses=STATUSES, consents=CONSENTS, saved=request.args.get("saved"),
                           can_edit=current().has_role("member")), status


@bp.route("/new", methods=["GET", "POST"])
@require("member")
def new():
    form, errors, rows = {"status": "new", "consent": "unknown"}, {}, _custom_rows({})
    if request.method == "POST":
        form, rows = dict(request.form), _posted_custom_rows()
        try:
            lead = leads.create(appliance().db, current(), form_data({}))
            return redirect(url_for("ui_leads.detail", lead_id=lead["id"], saved=1))
        except ValidationError as exc:
            errors = exc.fields
        except ServiceError as exc:
            errors = {"email": exc.message}
    return _render_form(None, form, errors, rows, 400 if errors else 200)


@bp.route("/<int:lead_id>", methods=["GET", "POST"])
@require("viewer")
def detail(lead_id: int):
    lead = leads.get(appliance().db, lead_id)
    form, errors, rows = dict(lead, tags=", ".join(lead["tags"])), {}, _custom_rows(lead["custom"])
    if request.method == "POST":
        form, rows = dict(form, **request.form), _posted_custom_rows()
        try:
            leads.update(appliance().db, current(), lead_id, form_data(lead["custom"]))
            return redirect(url_for("ui_leads.detail", lead_id=lead_id, saved=1))
        except ValidationError as exc:
            errors = exc.fields
        except ServiceError as exc:
            if exc.status == 403:
                raise
            errors = {"email": exc.message}
    return _render_form(lead, form, errors, rows, 400 if errors else 200)


@bp.post("/<int:lead_id>/delete")
@require("member")
def delete(lead_id: int):
    leads.delete(appliance().db, current(), lead_id)
    return redirect(url_for("ui_leads.index"))


# -- import: upload -> mapping and preview -> import (inline, or a job with progress) ----------

def _options_form() -> dict:
    return {"mode": request.form.get("mode", "skip"), "tag": request.form.get("tag", ""),
            "source": request.form.get("source", "")}


def _upload_page(error=None, status=200, options=None):
    return render_template("lead_import.html", stage="upload", error=error,
                           options=options or {"mode": "skip", "tag": "", "source": ""}), status


def _mapping_page(preview: dict, options: dict, error=None, mapping: dict | None = None, status=200):
    columns = []
    for column in preview["columns"]:
        own = custom_key(column["header"]) or f"column_{column['index'] + 1}"
        if own in RESERVED:
            own += "_2"
        suggested = column["target"] or ""
        custom = suggested if suggested.startswith("custom:") else f"custom:{own}"
        chosen = suggested if mapping is None else (mapping.get(column["index"]) or "")
        columns.append(dict(column, custom=custom, chosen=chosen))
    return render_template("lead_import.html", stage="map", preview=preview, columns=columns, options=options,
                           fields=lead_columns.FIELD_LABELS, error=error), status


@bp.route("/import", methods=["GET", "POST"])
@require("member")
def upload():
    uploads.purge_stale_uploads(_data_dir())
    if request.method == "GET":
        return _upload_page()
    options = _options_form()
    file = request.files.get("file")
    token = request.upload_token(file) if file is not None and file.filename else None
    if token is None:
        return _upload_page("Choose a CSV file.", 400, options)
    file.stream.flush()
    uploads.claim_upload(_data_dir(), current(), token)  # kept for the mapping step
    try:
        preview = lead_columns.preview(_data_dir(), current(), token)
    except ServiceError as exc:
        uploads.discard_upload(_data_dir(), current(), token)
        return _upload_page(exc.message, 400, options)
    return _mapping_page(preview, options)


def _posted_mapping() -> dict[int, str | None]:
    mapping = {}
    for name, value in request.form.items():
        if name.startswith("map_") and name[4:].isascii() and name[4:].isdigit():
            mapping[int(name[4:])] = value or None
    return mapping


@bp.post("/import/confirm")
@require("member")
def confirm():
    token, options, mapping = request.form.get("token", ""), _options_form(), _posted_mapping()
    try:
        outcome = lead_import.import_upload(appliance().db, current(), _data_dir(), token, mapping=mapping,
                                            **options)
    except NotFound as exc:
        return _upload_page(exc.message, 410, options)
    except ServiceError as exc:
        message = exc.message if not isinstance(exc, ValidationError) else \
            "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        return _mapping_page(lead_columns.preview(_data_dir(), current(), token), options, message, mapping, 400)
    if outcome.job_id is not None:
        return redirect(url_for("ui_leads.import_job", job_id=outcome.job_id))
    return render_template("lead_import.html", stage="result", result=outcome.result, job=None)


@bp.post("/import/cancel")
@require("member")
def cancel():
    uploads.discard_upload(_data_dir(), current(), request.form.get("token", ""))
    return redirect(url_for("ui_leads.upload"))


@bp.get("/import/jobs/<int:job_id>")
@require("member")
def import_job(job_id: int):
    job = jobs.get(appliance().db, job_id, current())
    if job["kind"] != "lead_import":
        abort(404)
    result = job["result"] if job["status"] == "done" else None
    return render_template("lead_import.html", stage="result" if result else "job", result=result, job=job)
