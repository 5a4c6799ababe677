"""Lead labels, set from the inbox: the built-in ones and custom labels.

A lead carries one label. Setting interested, not_interested or meeting_booked also moves the
lead to the status of the same name; clearing a label (or setting another) leaves the status as
it is. Members and above label leads and create custom labels (lower case letters, digits,
spaces, _ and -); deleting a custom label takes it off every lead that has it, so that needs an
admin. Every change is audited (lead.labelled, inbox_label.created, inbox_label.deleted).
"""

from __future__ import annotations

import re

from ..db import Database, inbox_repo, messages_repo
from ..db.timefmt import utcnow_iso
from . import audit
from .authz import Principal
from .errors import Conflict, NotFound, ValidationError

BUILTIN_LABELS = ("interested", "not_interested", "meeting_booked", "out_of_office", "wrong_person")
LABEL_SETS_STATUS = {"interested": "interested", "not_interested": "not_interested",
                     "meeting_booked": "meeting_booked"}
LABEL_NAME = re.compile(r"[a-z0-9_ -]{1,40}")
_COLOR = re.compile(r"(#[0-9a-f]{6})?")


def labels(db: Database) -> list[dict]:
    """Built-in labels first, then the custom ones by name."""
    builtin = [{"name": n, "builtin": True, "color": "", "sets_status": LABEL_SETS_STATUS.get(n)}
               for n in BUILTIN_LABELS]
    custom = [{"name": r["name"], "builtin": False, "color": r["color"], "sets_status": None, "created_at":
               r["created_at"]} for r in inbox_repo.custom_labels(db.connection())]
    return builtin + custom


def _label_name(value, field: str = "name") -> str:
    if not isinstance(value, str):
        raise ValidationError({field: "Expected a label name."})
    name = value.strip().lower()
    if not LABEL_NAME.fullmatch(name) or "  " in name:
        raise ValidationError({field: "A label is 1 to 40 lower-case letters, digits, spaces, _ or -."})
    return name


def create_label(db: Database, principal: Principal, data: dict) -> dict:
    principal.require("member", "write")
    name = _label_name(data.get("name"))
    color = data.get("color") or ""
    if not isinstance(color, str) or not _COLOR.fullmatch(color.lower()):
        raise ValidationError({"color": "A colour is #rrggbb, or empty."})
    if name in BUILTIN_LABELS:
        raise Conflict(f"{name} is a built-in label.", code="label_exists", details={"name": name})
    with db.transaction() as conn:
        if not inbox_repo.insert_label(conn, name, color.lower(), utcnow_iso()):
            raise Conflict(f"The label {name} exists already.", code="label_exists", details={"name": name})
        audit.record(conn, principal.actor(), "inbox_label.created", target_type="inbox_label", target_id=name,
                     metadata={"color": color.lower()})
    return next(label for label in labels(db) if label["name"] == name)


def delete_label(db: Database, principal: Principal, name: str) -> dict:
    """Remove a custom label; the leads that had it lose it (their status stays)."""
    principal.require("admin", "write")
    name = str(name).strip().lower()
    if name in BUILTIN_LABELS:
        raise Conflict(f"{name} is a built-in label and cannot be deleted.", code="builtin_label")
    with db.transaction() as conn:
        if inbox_repo.custom_label(conn, name) is None:
            raise NotFound("No such label.")
        cleared = inbox_repo.delete_label(conn, name, utcnow_iso())
        audit.record(conn, principal.actor(), "inbox_label.deleted", target_type="inbox_label", target_id=name,
                     metadata={"leads_cleared": cleared})
    return {"name": name, "leads_cleared": cleared}


def set_lead_label(db: Database, principal: Principal, lead_id: int, label) -> dict:
    """Label a lead (None clears). Returns {"lead_id", "label", "status"}."""
    principal.require("member", "write")
    name = None if label is None or label == "" else _label_name(label, "label")
    now = utcnow_iso()
    with db.transaction() as conn:
        lead = inbox_repo.lead_label(conn, lead_id)
        if lead is None:
            raise NotFound("No such lead.")
        if name is not None and name not in BUILTIN_LABELS and inbox_repo.custom_label(conn, name) is None:
            raise ValidationError({"label": f"No label named {name}: create it first, or use one of "
                                            f"{', '.join(BUILTIN_LABELS)}."})
        status = LABEL_SETS_STATUS.get(name) or lead["status"]
        if name != lead["label"] or status != lead["status"]:
            inbox_repo.set_lead_label(conn, lead_id, name, now)
            if status != lead["status"]:
                messages_repo.set_lead_status(conn, lead_id, status, now)
            audit.record(conn, principal.actor(), "lead.labelled", target_type="lead", target_id=lead_id,
                         metadata={"email": lead["email"], "label": name, "previous_label": lead["label"],
                                   "status": status, "previous_status": lead["status"]})
    return {"lead_id": lead_id, "label": name, "status": status}


