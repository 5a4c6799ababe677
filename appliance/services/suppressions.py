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
`suppress(conn, actor, ...)` inside their own transaction. CSV import and export of the
list live in suppression_files.
"""

from __future__ import annotations

import re
from typing import Iterable

from ..db import Database, leads_repo, suppressions_repo
from ..db.database import Connection
from ..db.timefmt import utcnow_iso
from . import audit, webhooks
from .audit import Actor
from .authz import Principal
from .errors import NotFound, ValidationError
from .users import email_problem

KINDS = ("email", "domain")
REASONS = ("unsubscribed", "bounced", "complained", "manual", "erased")
MAX_SOURCE = 200
MAX_NOTE = 500
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


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
        lead = leads_repo.by_email(conn, value) if created and reason == "unsubscribed" else None
        if lead is not None:  # a person records that this lead asked to unsubscribe
            webhooks.emit(conn, "lead.unsubscribed", {"lead": webhooks.lead_data(lead), "campaign": None,
                                                      "via": "suppression_list", "by": principal.email})
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
