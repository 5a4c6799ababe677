"""The suppression list: addresses and whole domains that are never mailed again.

Values and kinds
    `a@b.com` is an email entry; `b.com` or `@b.com` is a domain entry (stored as `b.com`).
    Everything is trimmed and lower-cased before it is stored or compared.

Matching (what `suppression_for` and `suppressed_among` decide)
    An address is suppressed when the address itself is listed, or its domain, or any parent
    domain of it: `b.com` covers `a@b.com` and `a@mail.b.com`, but not `a@notb.com` (whole
    labels only). Matching is exact otherwise: no plus-address folding, no dot folding, no
    wildcards. When several entries match, the most specific wins: the address, then the
    longest domain. Each check is one indexed query, also for a batch of thousands.

The sending engine and campaign enrolment call `suppression_for` / `suppressed_among` with
their own connection, so the check can sit in the same transaction that claims a message.
Other services (unsubscribe, bounce and complaint handling, erasure) add entries with
`suppress(conn, actor, ...)` inside their own transaction.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from ..db import Database, suppressions_repo
from ..db.database import Connection
from ..db.timefmt import utcnow_iso
from . import audit
from .audit import Actor
from .authz import Principal
from .errors import NotFound, ServiceError, ValidationError
from .users import email_problem

KINDS = ("email", "domain")
REASONS = ("unsubscribed", "bounced", "complained", "manual", "erased")
MAX_SOURCE = 200
MAX_NOTE = 500
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def public(row) -> dict:
    return {"id": row["id"], "value": row["value"], "kind": row["kind"], "reason": row["reason"],
            "source": row["source"], "created_by": row["created_by"], "created_at": row["created_at"]}


# -- values -------------------------------------------------------------------------------

def parse_value(text: object, kind: object = None) -> tuple[str, str]:
    """(value, kind) from what a person typed, or ValueError with a sentence saying why not.

    `kind` is optional; when given it must agree with the value (`b.com` is not an email)."""
    if not isinstance(text, str):
        raise ValueError("Enter an email address or a domain.")
    value = text.strip().lower()
    if kind not in (None, "") and kind not in KINDS:
        raise ValueError("The kind must be email or domain (or left out: it follows from the value).")
    if not value:
        raise ValueError("Enter an email address or a domain.")
    if value.startswith("mailto:"):
        value = value[len("mailto:"):]
    if value.startswith("*."):
        raise ValueError("No wildcards needed: a domain entry such as b.com also covers its subdomains.")
    if "@" in value[1:]:
        inferred = "email"
        if email_problem(value):
            raise ValueError(f"{text.strip()[:80]!r} is not a valid email address.")
    else:
        inferred = "domain"
        value = value.lstrip("@").rstrip(".")
        if len(value) > 253 or not _DOMAIN.match(value) or value.rsplit(".", 1)[1].isdigit():
            raise ValueError(f"{text.strip()[:80]!r} is not a valid email address or domain "
                             "(like name@example.com or example.com).")
    if kind and kind != inferred:
        raise ValueError(f"This is {'an email address' if inferred == 'email' else 'a domain'}, "
                         f"not {'an email address' if kind == 'email' else 'a domain'}.")
    return value, inferred


def parse_reason(text: object, default: str | None = None) -> str:
    reason = text.strip().lower() if isinstance(text, str) else text
    if reason in (None, "") and default:
        return default
    if reason not in REASONS:
        raise ValueError(f"Choose a reason among: {', '.join(REASONS)}.")
    return reason


def parse_source(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError("Expected text.")
    source = " ".join(text.split())  # one line: no CR/LF or tabs
    if len(source) > MAX_SOURCE:
        raise ValueError(f"Use at most {MAX_SOURCE} characters.")
    return source


def candidates(email: str) -> list[str]:
    """What may suppress an address, most specific first: itself, its domain, each parent
    domain (`a@x.b.com` → a@x.b.com, x.b.com, b.com). Top-level domains alone never match."""
    email = (email or "").strip().lower()
    _, at, domain = email.rpartition("@")
    if not at or not domain:
        return [email] if email else []
    labels = domain.rstrip(".").split(".")
    return [email] + [".".join(labels[i:]) for i in range(len(labels) - 1)]


# -- lookups for other services (fast, exact) --------------------------------------------

def suppression_for(conn: Connection, email: str) -> dict | None:
    """The entry that suppresses this address (itself, its domain or a parent domain; the
    most specific one), or None. One indexed query."""
    wanted = candidates(email)
    rows = {r["value"]: r for r in suppressions_repo.matching(conn, wanted)}
    for value in wanted:
        if value in rows:
            return public(rows[value])
    return None


def suppressed_among(conn: Connection, emails: Iterable[str]) -> dict[str, str]:
    """{email: reason} for the addresses in `emails` that are suppressed (keys exactly as
    given); the others are absent. One indexed query for the whole batch."""
    emails = list(emails)
    per_email = {e: candidates(e) for e in emails}
    wanted = sorted({c for cs in per_email.values() for c in cs})
    found = {r["value"]: r["reason"] for r in suppressions_repo.matching(conn, wanted)}
    if not found:
        return {}
    result = {}
    for email, cs in per_email.items():
        for value in cs:
            if value in found:
                result[email] = found[value]
                break
    return result


def is_suppressed(conn: Connection, email: str) -> bool:
    return suppression_for(conn, email) is not None


# -- changes --------------------------------------------------------------------------------

def suppress(conn: Connection, actor: Actor, value: str, *, reason: str, source: str = "",
             user_id: int | None = None) -> tuple[dict, bool]:
    """Add an entry inside the caller's transaction (audited there). Idempotent: a value that
    is already listed keeps its first row, returned with False (and nothing is recorded)."""
    value, kind = parse_value(value)
    reason, source = parse_reason(reason), parse_source(source)
    new_id = suppressions_repo.insert_if_absent(conn, value=value, kind=kind, reason=reason, source=source,
                                                created_by=user_id, now=utcnow_iso())
    if new_id is None:
        return public(suppressions_repo.by_value(conn, value)), False
    audit.record(conn, actor, "suppression.added", target_type="suppression", target_id=new_id,
                 metadata={"value": value, "kind": kind, "reason": reason, "source": source})
    return public(suppressions_repo.by_id(conn, new_id)), True


def add(db: Database, principal: Principal, data: dict) -> tuple[dict, bool]:
    """`{"value", "kind"?, "reason"?, "source"?}` (reason defaults to manual). Returns
    (entry, created); adding a value that is already listed returns the existing entry."""
    principal.require("member", "write")
    problems = {}
    try:
        value, _ = parse_value(data.get("value"), data.get("kind"))
    except ValueError as exc:
        problems["kind" if data.get("kind") not in (None, "", *KINDS) else "value"] = str(exc)
    try:
        reason = parse_reason(data.get("reason"), default="manual")
    except ValueError as exc:
        problems["reason"] = str(exc)
    try:
        source = parse_source(data.get("source"))
    except ValueError as exc:
        problems["source"] = str(exc)
    if problems:
        raise ValidationError(problems)
    with db.transaction() as conn:
        entry, created = suppress(conn, principal.actor(), value, reason=reason, source=source,
                                  user_id=principal.user_id)
    return dict(entry, created=created), created


def get(db: Database, suppression_id: int) -> dict:
    row = suppressions_repo.by_id(db.connection(), suppression_id)
    if row is None:
        raise NotFound("No such suppression entry.")
    return public(row)


def delete(db: Database, principal: Principal, suppression_id: int, note: str = "") -> dict:
    """Remove an entry (admins). Mail may then reach that address again, so the entry as it
    was and the remover's note are kept in the audit log."""
    principal.require("admin", "admin")
    note = " ".join((note or "").split())
    if len(note) > MAX_NOTE:
        raise ValidationError({"note": f"Use at most {MAX_NOTE} characters."})
    with db.transaction() as conn:
        row = suppressions_repo.by_id(conn, suppression_id)
        if row is None:
            raise NotFound("No such suppression entry.")
        suppressions_repo.delete(conn, suppression_id)
        audit.record(conn, principal.actor(), "suppression.removed", target_type="suppression",
                     target_id=suppression_id,
                     metadata={"value": row["value"], "kind": row["kind"], "reason": row["reason"],
                               "source": row["source"], "added_at": row["created_at"], "note": note})
    return public(row)


# -- reading --------------------------------------------------------------------------------

def parse_filters(*, kind: str | None = None, reason: str | None = None, q: str | None = None) -> dict:
    problems = {}
    kind, reason, q = (kind or "").strip().lower() or None, (reason or "").strip().lower() or None, \
        (q or "").strip() or None
    if kind and kind not in KINDS:
        problems["kind"] = "Choose email or domain."
    if reason and reason not in REASONS:
        problems["reason"] = f"Choose one of: {', '.join(REASONS)}."
    if q and len(q) > 254:
        problems["q"] = "Use at most 254 characters."
    if problems:
        raise ValidationError(problems, "Some filters need attention.")
    return {"kind": kind, "reason": reason, "q": q.lower() if q else None}


def search(db: Database, *, kind: str | None = None, reason: str | None = None, q: str | None = None,
           before_id: int | None = None, limit: int = 50) -> list[dict]:
    """Newest first; `before_id` (the last id of the previous page) continues the list."""
    filters = parse_filters(kind=kind, reason=reason, q=q)
    rows = suppressions_repo.search(db.connection(), before_id=before_id or None, limit=limit, **filters)
    return [public(r) for r in rows]


def overview(db: Database) -> dict:
    conn = db.connection()
    by_kind = suppressions_repo.count_by_kind(conn)
    return {"total": sum(by_kind.values()), "by_kind": by_kind, "by_reason": suppressions_repo.count_by_reason(conn)}


def check(db: Database, email: str) -> dict:
    """Is this address suppressed, and by which entry? (for people asking the question)."""
    email = (email or "").strip().lower()
    if email_problem(email):
        raise ValidationError({"email": "Enter a valid email address, like name@example.com."})
    match = suppression_for(db.connection(), email)
    return {"email": email, "suppressed": match is not None, "match": match}


# -- CSV import -----------------------------------------------------------------------------

IMPORT_BATCH = 1000
MAX_LISTED_ERRORS = 1000
VALUE_COLUMNS = ("value", "email", "domain")  # the first present, non-empty one is the row's value
ALIASES = {"email_address": "email", "e_mail": "email", "emails": "email", "address": "email",
           "domains": "domain", "domain_name": "domain", "entry": "value"}
OPTIONAL_COLUMNS = ("reason", "source", "kind")


class ImportRefused(ServiceError):
    status = 422
    code = "import_refused"


def _column(header: str) -> str:
    name = header.strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(name, name)


def _unescape(cell: str) -> str:
    """Undo the export's formula escaping, so an exported file imports unchanged."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _FORMULA_LEAD else cell


def _chain(first: str, rest: IO[str]) -> Iterator[str]:
    yield from io.StringIO(first + rest.readline())  # finish the sample's last line
    yield from rest


def read_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, {"value", "reason"?, "source"?, "kind"?}) per data row, read as a stream.

    With a header line, the value comes from a `value`, `email` or `domain` column (other
    columns are ignored). Without one, the file is a single column of values, from line 1.
    A one-column file whose first cell looks like a word rather than an address or a domain
    is taken as having a header."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    sample = text.read(8192)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(_chain(sample, text), dialect)
    first, first_line = None, 1
    for first in reader:
        if any(v.strip() for v in first):
            break
        first_line = reader.line_num + 1
    else:
        raise ImportRefused("The file is empty.")
    columns = [_column(h) for h in first]
    if any(c in VALUE_COLUMNS for c in columns):
        value_columns = [c for c in VALUE_COLUMNS if c in columns]
    elif len([c for c in first if c.strip()]) == 1 and ("@" in first[0] or "." in first[0]):
        value_columns, columns = ["value"], ["value"]  # no header: the first line is data
        yield first_line, {"value": _unescape(first[0])}
    elif len(first) == 1:
        value_columns, columns = ["value"], ["value"]  # a one-column file with its own header word
    else:
        raise ImportRefused("The first line must be a header with a `value`, `email` or `domain` column "
                            "(optional: `reason`, `source`), or the file must be one column of addresses.",
                            details={"found": first[:20]})
    line = reader.line_num + 1
    for values in reader:
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        cells = {c: _unescape(v) for c, v in zip(columns, values) if c}
        value = next((cells[c] for c in value_columns if cells.get(c, "").strip()), "")
        row = {"value": value}
        for name in OPTIONAL_COLUMNS:
            if name in cells:
                row[name] = cells[name]
        yield start, row


@dataclass
class ImportResult:
    imported: int = 0
    already_suppressed: int = 0
    skipped: int = 0
    errors: list | None = None
    errors_truncated: bool = False

    def as_dict(self) -> dict:
        return {"imported": self.imported, "already_suppressed": self.already_suppressed, "skipped": self.skipped,
                "errors": self.errors or [], "errors_truncated": self.errors_truncated}


def import_csv(db: Database, principal: Principal, stream: IO[bytes], *, reason: str | None = None,
               source: str | None = None) -> dict:
    """Add every good row, list each bad one by line number. `reason` (default manual) and
    `source` (default "csv import") apply to rows without their own. Rows already listed keep
    their first entry. Written in short batches; one audit entry for the whole import."""
    principal.require("member", "write")
    problems = {}
    try:
        default_reason = parse_reason(reason, default="manual")
    except ValueError as exc:
        problems["reason"] = str(exc)
    try:
        default_source = parse_source(source) or "csv import"
    except ValueError as exc:
        problems["source"] = str(exc)
    if problems:
        raise ValidationError(problems)
    result = ImportResult(errors=[])
    batch: list[tuple[str, str, str, str]] = []
    lines = 0

    def flush() -> None:
        if batch:
            with db.transaction() as conn:
                added = suppressions_repo.insert_many_if_absent(conn, batch, principal.user_id, utcnow_iso())
            result.imported += added
            result.already_suppressed += len(batch) - added
            batch.clear()

    def bad(line: int, message: str) -> None:
        result.skipped += 1
        if len(result.errors) < MAX_LISTED_ERRORS:
            result.errors.append({"line": line, "error": message})
        else:
            result.errors_truncated = True

    complete = False
    try:
        for line, row in read_rows(stream):
            lines += 1
            try:
                value, kind = parse_value(row["value"], (row.get("kind") or "").strip().lower() or None)
            except ValueError as exc:
                bad(line, str(exc) if row["value"].strip() else "No address or domain on this line.")
                continue
            try:
                row_reason = parse_reason(row.get("reason"), default=default_reason)
            except ValueError as exc:
                bad(line, f"reason {row.get('reason', '').strip()[:40]!r}: {exc}")
                continue
            try:
                row_source = parse_source(row.get("source")) or default_source
            except ValueError as exc:
                bad(line, f"source: {exc}")
                continue
            batch.append((value, kind, row_reason, row_source))
            if len(batch) >= IMPORT_BATCH:
                flush()
        flush()
        complete = True
    finally:
        if result.imported or complete:
            with db.transaction() as conn:
                audit.record(conn, principal.actor(), "suppression.imported", target_type="suppression",
                             metadata={"imported": result.imported,
                                       "already_suppressed": result.already_suppressed,
                                       "skipped": result.skipped, "rows": lines, "reason": default_reason,
                                       "source": default_source, "complete": complete})
    return result.as_dict()


# -- CSV export -----------------------------------------------------------------------------

EXPORT_COLUMNS = ("value", "kind", "reason", "source", "created_at")
EXPORT_BATCH = 1000


def start_export(db: Database, principal: Principal, filters: dict) -> Iterator[str]:
    """The list (or the filtered part of it) as CSV chunks, newest first, formula-escaped.
    The export is recorded in the audit log before anything is read."""
    principal.require("viewer", "read")
    filters = parse_filters(**filters)
    audit.record_now(db, principal.actor(), "suppression.exported", target_type="suppression",
                     metadata={"filters": {k: v for k, v in filters.items() if v}})
    return _csv_chunks(db, filters)


def _csv_chunks(db: Database, filters: dict) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    before_id = None
    while True:
        rows = suppressions_repo.search(db.connection(), before_id=before_id, limit=EXPORT_BATCH, **filters)
        for row in rows:
            writer.writerow([audit.csv_safe(row[c]) for c in EXPORT_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < EXPORT_BATCH:
            return
        before_id = rows[-1]["id"]
