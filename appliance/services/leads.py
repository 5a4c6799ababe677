"""Leads: the people campaigns write to. One row per address (normalised, unique), with the
usual contact fields, custom fields (any other CSV column, by name), tags, a pipeline status
and the consent basis CASL asks for.

Everyone signed in reads leads; members and above write them (they are the sales team's
work). Deletes, imports and exports are audited; single edits are not (they would drown
the log).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Iterable, Iterator

from ..db import Database, leads_repo
from ..db.timefmt import utcnow_iso
from . import audit, webhooks
from .audit import csv_safe
from .authz import Principal
from .errors import Conflict, NotFound, ValidationError
from .lead_input import DEFAULTS, STATUSES, parse_lead, parse_tags

PUBLIC_FIELDS = ("id", "email", "first_name", "last_name", "company", "title", "phone", "website", "timezone",
                 "status", "consent", "source", "label", "soft_bounces", "created_at", "updated_at")
EXPORT_COLUMNS = ("id", "email", "first_name", "last_name", "company", "title", "phone", "website", "timezone",
                  "status", "consent", "source", "tags", "created_at", "updated_at")
EXPORT_BATCH = 1000
MAX_Q = 200


def public(row, tags: list[str]) -> dict:
    body = {name: row[name] for name in PUBLIC_FIELDS}
    body["tags"] = tags
    body["custom"] = json.loads(row["custom"])
    return body


_ENCODE_CUSTOM = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps_custom(custom: dict) -> str:
    return _ENCODE_CUSTOM(custom)


def _row(conn, lead_id: int):
    row = leads_repo.by_id(conn, lead_id)
    if row is None:
        raise NotFound("No such lead.")
    return row


def get(db: Database, lead_id: int) -> dict:
    conn = db.connection()
    row = _row(conn, lead_id)
    return public(row, leads_repo.tags_of(conn, [lead_id])[lead_id])


def filters(status: str | None = None, tag: str | None = None, q: str | None = None) -> dict:
    """The list filters, checked and normalised (shared by the list, the export and the pages)."""
    problems = {}
    status = (status or "").strip().lower() or None
    if status and status not in STATUSES:
        problems["status"] = f"Choose one of: {', '.join(STATUSES)}."
    tag = (tag or "").strip().lower() or None
    q = (q or "").strip() or None
    if q and len(q) > MAX_Q:
        problems["q"] = f"Use at most {MAX_Q} characters."
    if problems:
        raise ValidationError(problems, "Some filters need attention.")
    return {"status": status, "tag": tag, "q": q}


def search(db: Database, *, status: str | None = None, tag: str | None = None, q: str | None = None,
           before_id: int = 0, limit: int = 50) -> list[dict]:
    """One page, newest first; continue with before_id = the last id of the page."""
    conn = db.connection()
    rows = leads_repo.search(conn, **filters(status, tag, q), before_id=before_id, limit=limit)
    tags = leads_repo.tags_of(conn, [r["id"] for r in rows])
    return [public(r, tags[r["id"]]) for r in rows]


def overview(db: Database) -> dict:
    conn = db.connection()
    by_status = leads_repo.count_by_status(conn)
    return {"by_status": by_status, "total": sum(by_status.values()), "tags": leads_repo.all_tags(conn)}


def all_tags(db: Database) -> list[str]:
    return leads_repo.all_tags(db.connection())


def _stored(fields: dict) -> dict:
    """Service fields -> repository columns (custom as JSON, the address's domain)."""
    out = {k: v for k, v in fields.items() if k not in ("tags", "custom")}
    if "custom" in fields:
        out["custom"] = dumps_custom(fields["custom"])
    if "email" in fields:
        out["email_domain"] = fields["email"].rpartition("@")[2]
    return out


def _exists(email: str, lead_id: int) -> Conflict:
    return Conflict(f"A lead with the address {email} already exists.", code="lead_exists",
                    details={"id": lead_id})


def create(db: Database, principal: Principal, data: dict) -> dict:
    principal.require("member", "write")
    fields = parse_lead(data)
    tags = fields.pop("tags", [])
    fields = {**DEFAULTS, "custom": {}, **fields}
    with db.transaction() as conn:
        if existing := leads_repo.by_email(conn, fields["email"]):
            raise _exists(fields["email"], existing["id"])
        lead_id = leads_repo.insert(conn, _stored(fields), utcnow_iso())
        leads_repo.set_tags(conn, lead_id, tags)
    return get(db, lead_id)


def update(db: Database, principal: Principal, lead_id: int, data: dict) -> dict:
    """A partial update: fields given are set (blank clears), `tags` replaces the list,
    `custom` is merged (a null or empty value removes that field)."""
    principal.require("member", "write")
    with db.transaction() as conn:
        row = _row(conn, lead_id)
        fields = parse_lead(data, existing={"custom": json.loads(row["custom"])})
        tags = fields.pop("tags", None)
        if fields.get("email", row["email"]) != row["email"]:
            if other := leads_repo.by_email(conn, fields["email"]):
                raise _exists(fields["email"], other["id"])
        changed = {k: v for k, v in _stored(fields).items() if row[k] != v}
        if changed:
            leads_repo.update(conn, lead_id, changed, utcnow_iso())
        if "status" in changed:
            _status_changed(conn, lead_id, row["status"], principal)
        if tags is not None:
            leads_repo.set_tags(conn, lead_id, tags)
    return get(db, lead_id)


def set_status(db: Database, principal: Principal | None, lead_id: int, status: str) -> dict:
    """Move a lead along the pipeline: a person (member or above), or the system (principal
    None: replies, bounces and unsubscribes found by mailbox sync)."""
    if principal is not None:
        principal.require("member", "write")
    if status not in STATUSES:
        raise ValidationError({"status": f"Choose one of: {', '.join(STATUSES)}."})
    with db.transaction() as conn:
        row = _row(conn, lead_id)
        if row["status"] != status:
            leads_repo.update(conn, lead_id, {"status": status}, utcnow_iso())
            _status_changed(conn, lead_id, row["status"], principal)
    return get(db, lead_id)


def _status_changed(conn, lead_id: int, previous: str, principal: Principal | None) -> None:
    webhooks.emit(conn, "lead.status_changed", {"lead": webhooks.lead_data(leads_repo.by_id(conn, lead_id)),
                                                "previous_status": previous,
                                                "by": principal.email if principal else "system"})


def delete(db: Database, principal: Principal, lead_id: int) -> None:
    principal.require("member", "write")
    with db.transaction() as conn:
        row = _row(conn, lead_id)
        leads_repo.delete(conn, lead_id)
        audit.record(conn, principal.actor(), "lead.deleted", target_type="lead", target_id=lead_id,
                     metadata={"email": row["email"]})


def _tag_pairs(conn, lead_ids: Iterable[int], tags: list[str]) -> list[tuple[int, str]]:
    ids = leads_repo.existing_ids(conn, sorted({int(i) for i in lead_ids}))
    return [(lead_id, tag) for lead_id in ids for tag in tags]


def add_tags(db: Database, principal: Principal, lead_ids: Iterable[int], tags) -> int:
    """Tag many leads at once; returns how many leads were found. Existing tags are kept."""
    principal.require("member", "write")
    try:
        tags = parse_tags(tags)
    except ValueError as exc:
        raise ValidationError({"tags": str(exc)}) from None
    with db.transaction() as conn:
        pairs = _tag_pairs(conn, lead_ids, tags)
        leads_repo.add_tags(conn, pairs)
    return len({p[0] for p in pairs})


def remove_tags(db: Database, principal: Principal, lead_ids: Iterable[int], tags) -> None:
    principal.require("member", "write")
    try:
        tags = parse_tags(tags)
    except ValueError as exc:
        raise ValidationError({"tags": str(exc)}) from None
    with db.transaction() as conn:
        leads_repo.remove_tags(conn, _tag_pairs(conn, lead_ids, tags))


# -- export ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """A recorded export of the leads matching `filters`, as CSV, read in batches."""

    db: Database
    at: str
    filters: dict

    @property
    def filename(self) -> str:
        return f"mailflow-leads-{self.at.replace('-', '').replace(':', '')}.csv"

    def rows(self) -> Iterator[list[str]]:
        conn = self.db.connection()
        custom_keys = leads_repo.custom_keys(conn, **self.filters)
        yield [*EXPORT_COLUMNS, *custom_keys]
        after = 0
        while True:
            batch = leads_repo.export_batch(self.db.connection(), **self.filters, after_id=after, limit=EXPORT_BATCH)
            if not batch:
                return
            tags = leads_repo.tags_of(self.db.connection(), [r["id"] for r in batch])
            for r in batch:
                custom = json.loads(r["custom"])
                yield [csv_safe(r[c]) for c in EXPORT_COLUMNS[:12]] + [
                    csv_safe(";".join(tags[r["id"]])), r["created_at"], r["updated_at"],
                    *(csv_safe(custom.get(k, "")) for k in custom_keys)]
            if len(batch) < EXPORT_BATCH:
                return
            after = batch[-1]["id"]

    def chunks(self, chunk_chars: int = 64 * 1024) -> Iterator[str]:
        """RFC 4180 CSV (formula-escaped cells), in chunks for a streamed response."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in self.rows():
            writer.writerow(row)
            if buffer.tell() >= chunk_chars:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()


def start_export(db: Database, principal: Principal, *, status: str | None = None, tag: str | None = None,
                 q: str | None = None) -> Export:
    """Check the filters and record the export (leads are personal data) before any row is read."""
    principal.require("viewer", "read")
    chosen = filters(status, tag, q)
    audit.record_now(db, principal.actor(), "lead.exported",
                     metadata={"filters": {k: v for k, v in chosen.items() if v}})
    return Export(db, utcnow_iso(), chosen)
