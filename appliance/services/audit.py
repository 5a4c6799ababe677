"""The audit log: who did what, from where, written in the same transaction as the change.

Rows are hash-chained (each carries the SHA-256 of its content and the previous row's hash)
and the table refuses UPDATE and DELETE; `verify()` walks the chain and names the first
row that was edited, removed or inserted out of band.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Iterator

from ..db import Database
from ..db import audit_repo
from ..db.database import Connection, Row
from ..db.timefmt import utcnow_iso
from .errors import ValidationError

if TYPE_CHECKING:  # authz imports Actor from here
    from .authz import Principal


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, an API key (on behalf of its user), the system, or nobody yet."""

    type: str  # user | api_key | system | anonymous
    id: int | None
    label: str
    ip: str | None = None

    @classmethod
    def system(cls, label: str = "system") -> "Actor":
        return cls("system", None, label)

    @classmethod
    def anonymous(cls, ip: str | None, label: str = "anonymous") -> "Actor":
        return cls("anonymous", None, label, ip)


def entry_hash(prev_hash: str, entry: dict) -> str:
    content = [entry[c] for c in audit_repo.COLUMNS[:-2]]
    canonical = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def record(conn: Connection, actor: Actor, action: str, *, target_type: str | None = None,
           target_id: object = None, metadata: dict | None = None) -> int:
    """Append one entry. Call inside the transaction of the change it records (BEGIN IMMEDIATE
    holds the write lock, so reading the last hash and appending cannot interleave)."""
    if not conn.in_transaction:
        raise RuntimeError("audit.record must run inside the transaction of the change it records")
    entry = {
        "at": utcnow_iso(), "actor_type": actor.type, "actor_id": actor.id, "actor_label": actor.label,
        "ip": actor.ip, "action": action, "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "metadata": json.dumps(metadata or {}, separators=(",", ":"), sort_keys=True, default=str),
    }
    entry["prev_hash"] = audit_repo.last_hash(conn)
    entry["hash"] = entry_hash(entry["prev_hash"], entry)
    return audit_repo.insert(conn, entry)


def record_now(db: Database, actor: Actor, action: str, **kw) -> int:
    """An entry for an event that changes nothing else (e.g. a failed login)."""
    with db.transaction() as conn:
        return record(conn, actor, action, **kw)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    problem: str | None = None
    head: str = audit_repo.GENESIS  # hash of the last verified entry


def anchor(db: Database) -> dict:
    """The chain's head, written to the service log (outside the database) every hour: an
    attacker who removes the newest entries leaves a valid chain behind, but not one that
    reaches the head the journal already recorded."""
    last_id, head = audit_repo.head(db.connection())
    return {"last_id": last_id, "head": head}


def verify(db: Database) -> VerifyResult:
    prev = audit_repo.GENESIS
    expected_id = None
    checked = 0
    for row in audit_repo.all_in_order(db.connection()):
        entry = dict(row)
        if expected_id is not None and row["id"] != expected_id:
            return VerifyResult(False, checked, f"entries {expected_id}..{row['id'] - 1} are missing")
        if row["prev_hash"] != prev:
            return VerifyResult(False, checked, f"entry {row['id']} does not follow the entry before it "
                                                "(an entry was removed or inserted)")
        if entry_hash(prev, entry) != row["hash"]:
            return VerifyResult(False, checked, f"entry {row['id']} was modified after it was written")
        prev = row["hash"]
        expected_id = row["id"] + 1
        checked += 1
    return VerifyResult(True, checked, head=prev)


def to_dict(row: Row) -> dict:
    return {
        "id": row["id"], "at": row["at"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"], "label": row["actor_label"]},
        "ip": row["ip"], "action": row["action"],
        "target": {"type": row["target_type"], "id": row["target_id"]} if row["target_type"] else None,
        "metadata": json.loads(row["metadata"]),
    }


def search(db: Database, *, limit: int = 50, **filters) -> list[dict]:
    return [to_dict(r) for r in audit_repo.search(db.connection(), limit=limit, **filters)]


def csv_safe(value: object) -> str:
    """Spreadsheet-formula escaping (CSV injection): a cell starting with = + - @ or a control
    character is prefixed with a quote so a spreadsheet shows it as text instead of running it."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(entries: Iterable[dict]) -> Iterable[list[str]]:
    yield ["id", "at", "actor_type", "actor", "ip", "action", "target_type", "target_id", "metadata"]
    for e in entries:
        target = e["target"] or {}
        yield [csv_safe(v) for v in (e["id"], e["at"], e["actor"]["type"], e["actor"]["label"], e["ip"],
                                     e["action"], target.get("type"), target.get("id"),
                                     json.dumps(e["metadata"], sort_keys=True))]


# -- reading and exporting (admins) ---------------------------------------------------------

FILTERS = ("action", "actor", "since", "until")
EXPORT_FORMATS = ("csv", "json")
EXPORT_BATCH = 500
_MAX_FILTER_CHARS = 320


def parse_time(text: str | None, *, end: bool = False) -> str | None:
    """An ISO 8601 date or date-time as the log stores times (UTC, whole seconds, Z).

    A time without an offset is UTC. Fractions of a second round up, so `at >= since` and
    `at < until` keep their meaning on whole-second times. With `end`, a date alone means
    the end of that day (an `until` of 2024-05-31 includes the 31st)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            moment = datetime.fromisoformat(text)
        else:
            moment = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
        if moment.microsecond:
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an ISO 8601 date or time") from None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_filters(*, action: str | None = None, actor: str | None = None, since: str | None = None,
                  until: str | None = None) -> dict:
    """The log's filters, checked: `action` (exact, or a prefix ending in '.'), `actor` (the
    label shown in the log), `since` (inclusive) and `until` (exclusive) as ISO 8601."""
    problems, out = {}, {}
    for name, value in (("action", action), ("actor", actor)):
        value = (value or "").strip()
        if len(value) > _MAX_FILTER_CHARS:
            problems[name] = f"Use at most {_MAX_FILTER_CHARS} characters."
        out[name] = value or None
    for name, value in (("since", since), ("until", until)):
        try:
            out[name] = parse_time(value, end=name == "until")
        except ValueError:
            problems[name] = "Use an ISO 8601 date or time, like 2024-05-01 or 2024-05-01T09:30:00Z."
            out[name] = None
    if out["since"] and out["until"] and out["since"] >= out["until"]:
        problems["until"] = "This must be later than the start (since)."
    if problems:
        raise ValidationError(problems, "Some filters need attention.")
    return out


def list_page(db: Database, *, limit: int = 50, before_id: int | None = None,
              **filters) -> tuple[list[dict], int | None]:
    """One page, newest first, and the cursor (an id to continue below) when there is more."""
    rows = audit_repo.search(db.connection(), before_id=before_id or None, limit=limit + 1, **filters)
    items = [to_dict(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


def iter_entries(db: Database, *, before_id: int | None = None, batch: int = EXPORT_BATCH,
                 **filters) -> Iterator[dict]:
    """Every match, newest first, read in batches (no read transaction held in between)."""
    while True:
        rows = audit_repo.search(db.connection(), before_id=before_id or None, limit=batch, **filters)
        yield from (to_dict(r) for r in rows)
        if len(rows) < batch:
            return
        before_id = rows[-1]["id"]


@dataclass(frozen=True)
class Export:
    """An export that has been recorded: it covers the entries written before its own."""

    db: Database
    id: int
    format: str
    at: str
    filters: dict

    @property
    def filename(self) -> str:
        return f"mailflow-audit-log-{self.at.replace('-', '').replace(':', '')}.{self.format}"

    @property
    def mimetype(self) -> str:
        return {"csv": "text/csv", "json": "application/json"}[self.format]

    def chunks(self) -> Iterator[str]:
        entries = iter_entries(self.db, before_id=self.id, **self.filters)
        if self.format == "csv":
            return csv_chunks(entries)
        return json_chunks(entries, exported_at=self.at, filters=self.filters)


def start_export(db: Database, principal: "Principal", fmt: str, filters: dict) -> Export:
    """Reading the whole log out is an admin action of its own: record it before any entry
    is read (a failed write means no export)."""
    principal.require("admin", "admin")
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"format": "Choose csv or json."}, "Unknown export format.")
    export_id = record_now(db, principal.actor(), "audit.exported",
                           metadata={"format": fmt, "filters": {k: v for k, v in filters.items() if v}})
    return Export(db, export_id, fmt, utcnow_iso(), filters)


def csv_chunks(entries: Iterable[dict], chunk_chars: int = 64 * 1024) -> Iterator[str]:
    """RFC 4180 CSV, formula-escaped (csv_rows), in chunks for a streamed response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in csv_rows(entries):
        writer.writerow(row)
        if buffer.tell() >= chunk_chars:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(entries: Iterable[dict], *, exported_at: str, filters: dict) -> Iterator[str]:
    """`{"exported_at", "filters", "items": [...]}`, each item as the API lists it."""
    head = json.dumps({"exported_at": exported_at, "filters": {k: v for k, v in filters.items() if v}},
                      ensure_ascii=False)
    yield head[:-1] + ', "items": ['
    for n, entry in enumerate(entries):
        yield ("," if n else "") + "\n" + json.dumps(entry, ensure_ascii=False)
    yield "\n]}\n"
