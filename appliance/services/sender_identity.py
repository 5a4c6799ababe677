"""The legal sender identity (CAN-SPAM, CASL): who sends, and a postal address where they
can be reached. It is printed in the footer of every message, and a campaign cannot launch
while `problems()` lists anything.

Stored as one JSON value in the settings table. `get()` always returns all three fields
(empty strings when unset), so callers never test for missing keys.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from ..db import Database, settings_repo
from . import audit
from .authz import Principal
from .errors import ValidationError

SETTING = "sender_identity"
FIELDS = ("company", "postal_address", "website")
MAX_COMPANY = 200
MAX_ADDRESS = 500
MAX_ADDRESS_LINES = 8
MAX_WEBSITE = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def empty() -> dict:
    return {name: "" for name in FIELDS}


def get(db: Database) -> dict:
    """{company, postal_address, website}; empty strings for what is not set."""
    return _decode(settings_repo.get(db.connection(), SETTING))


def _decode(raw: str | None) -> dict:
    identity = empty()
    try:
        stored = json.loads(raw) if raw else {}
    except ValueError:
        stored = {}
    if isinstance(stored, dict):
        identity.update({k: stored[k] for k in FIELDS if isinstance(stored.get(k), str)})
    return identity


def problems(identity: dict) -> list[str]:
    """What is missing before mail may go out (an empty list when the identity is complete)."""
    found = []
    if not (identity.get("company") or "").strip():
        found.append("The sender's company name is not set (Settings → Sender identity).")
    if not (identity.get("postal_address") or "").strip():
        found.append("The sender's postal address is not set (Settings → Sender identity); "
                     "CAN-SPAM and CASL require one in every message.")
    return found


def footer_text(identity: dict) -> str:
    """The plain-text footer lines every message carries: the company, then the postal
    address (one line per address line). The unsubscribe line is added by the sending code;
    the website is not printed (CASL's contact requirement is met by the sender's own
    address in From, and the footer stays short)."""
    lines = [(identity.get("company") or "").strip()]
    lines += [line.strip() for line in (identity.get("postal_address") or "").splitlines()]
    return "\n".join(line for line in lines if line)


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("Expected text.")
    return value


def parse(data: dict) -> dict:
    """Validated, normalised identity from input; ValidationError lists each field's problem."""
    errors, out = {}, {}
    for name in FIELDS:
        try:
            out[name] = _text(data, name)
        except ValueError as exc:
            errors[name] = str(exc)
            out[name] = ""
    company = " ".join(out["company"].split())
    if not company:
        errors.setdefault("company", "Enter the legal name of the sending company (or your own name).")
    elif len(company) > MAX_COMPANY:
        errors.setdefault("company", f"Use at most {MAX_COMPANY} characters.")
    elif _CONTROL.search(company):
        errors.setdefault("company", "Remove the control characters.")
    lines = [" ".join(line.split()) for line in out["postal_address"].replace("\r\n", "\n").replace("\r", "\n")
             .split("\n")]
    lines = [line for line in lines if line]
    address = "\n".join(lines)
    if not address:
        errors.setdefault("postal_address", "Enter a postal address (street address, PO box or registered "
                                            "private mailbox): CAN-SPAM and CASL require one.")
    elif len(address) > MAX_ADDRESS:
        errors.setdefault("postal_address", f"Use at most {MAX_ADDRESS} characters.")
    elif len(lines) > MAX_ADDRESS_LINES:
        errors.setdefault("postal_address", f"Use at most {MAX_ADDRESS_LINES} lines.")
    elif _CONTROL.search(address):
        errors.setdefault("postal_address", "Remove the control characters.")
    website = out["website"].strip()
    if website:
        if website.lower().startswith("www."):
            website = "https://" + website
        problem = _website_problem(website)
        if problem:
            errors.setdefault("website", problem)
    if errors:
        raise ValidationError(errors)
    return {"company": company, "postal_address": address, "website": website}


def _website_problem(url: str) -> str | None:
    if len(url) > MAX_WEBSITE:
        return f"Use at most {MAX_WEBSITE} characters."
    if any(c.isspace() for c in url) or _CONTROL.search(url):
        return "A web address has no spaces."
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return "Enter a web address like https://example.com."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "." not in parts.hostname:
        return "Enter a web address starting with https:// or http://, like https://example.com."
    if parts.username or parts.password:
        return "Leave out user names and passwords."
    return None


def save(db: Database, principal: Principal, data: dict) -> dict:
    """Replace the identity (admins). Audited with the names of the fields that changed."""
    principal.require("admin", "admin")
    identity = parse(data)
    with db.transaction() as conn:
        before = _decode(settings_repo.get(conn, SETTING))
        changed = [name for name in FIELDS if before[name] != identity[name]]
        if changed:
            settings_repo.put(conn, SETTING, json.dumps(identity, ensure_ascii=False))
            audit.record(conn, principal.actor(), "settings.sender_identity_changed", target_type="settings",
                         target_id=SETTING, metadata={"fields": changed})
    return identity


def view(identity: dict) -> dict:
    """The identity as the API shows it, with what is missing and the footer it produces."""
    return dict(identity, problems=problems(identity), footer_text=footer_text(identity))
