"""Settings → Audit log: filter, page through and export the audit log (admins)."""

from __future__ import annotations

import json

from flask import Blueprint, render_template, request

from appliance.services import audit
from appliance.services.errors import ValidationError
from appliance.services.ids import id_from_text

from ..auth import require
from ..context import appliance

bp = Blueprint("ui_audit", __name__, url_prefix="/settings/audit-log")

PAGE_SIZE = 50


def cursor_arg() -> int | None:
    value = request.args.get("cursor", "")
    return id_from_text(value)


def display(entry: dict) -> dict:
    """Metadata as key/value pairs for the table (values that are not text shown as JSON)."""
    meta = entry["metadata"] if isinstance(entry["metadata"], dict) else {"value": entry["metadata"]}
    entry["meta_items"] = [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True))
                           for k, v in meta.items()]
    return entry


@bp.get("")
@require("admin")
def index():
    form = {name: request.args.get(name, "") for name in audit.FILTERS}
    errors, entries, next_cursor = {}, [], None
    try:
        filters = audit.parse_filters(**form)
    except ValidationError as exc:
        errors = exc.fields
    else:
        entries, next_cursor = audit.list_page(appliance().db, limit=PAGE_SIZE, before_id=cursor_arg(),
                                               **filters)
    active = {name: value.strip() for name, value in form.items() if value.strip()}
    return render_template("audit.html", form=form, errors=errors, entries=[display(e) for e in entries],
                           next_cursor=next_cursor, paged=cursor_arg() is not None,
                           active=active), 400 if errors else 200
