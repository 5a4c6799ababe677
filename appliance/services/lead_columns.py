"""Which lead field each column of an imported CSV goes to: suggestions from the header names
(the common aliases, our own export's columns, anything else as a custom field), the preview
the import page's mapping step shows, and the checked plan the importer follows, from the
suggestions or the mapping chosen on the page."""

from __future__ import annotations

from pathlib import Path

from ..csv_input import ImportRefused, normal_header, open_csv
from . import lead_input
from .authz import Principal
from .uploads import upload_path

PREVIEW_ROWS = 5

# Header names people use for the lead fields, after lower-casing and turning spaces,
# hyphens, dots and slashes into "_".
ALIASES = {
    "e_mail": "email", "email_address": "email", "e_mail_address": "email", "mail": "email",
    "work_email": "email", "business_email": "email", "emailaddress": "email",
    "first": "first_name", "firstname": "first_name", "given_name": "first_name", "fname": "first_name",
    "forename": "first_name",
    "last": "last_name", "lastname": "last_name", "surname": "last_name", "family_name": "last_name",
    "lname": "last_name",
    "company_name": "company", "organization": "company", "organisation": "company", "account": "company",
    "account_name": "company", "employer": "company",
    "job_title": "title", "jobtitle": "title", "position": "title", "role": "title",
    "phone_number": "phone", "mobile": "phone", "mobile_phone": "phone", "telephone": "phone", "tel": "phone",
    "cell": "phone", "work_phone": "phone",
    "url": "website", "web": "website", "company_website": "website", "website_url": "website",
    "homepage": "website", "web_site": "website",
    "time_zone": "timezone", "tz": "timezone",
    "tag": "tags", "list": "tags", "lists": "tags", "label": "tags", "labels": "tags",
    "lead_status": "status", "consent_basis": "consent", "casl_consent": "consent", "legal_basis": "consent",
    "lead_source": "source",
}
KNOWN = frozenset(lead_input.FIELDS) | {"tags"}
# Columns of our own export that are not lead data.
IGNORED = frozenset({"id", "created_at", "updated_at", "email_domain"})
FIELD_LABELS = {"email": "Email", "first_name": "First name", "last_name": "Last name", "company": "Company",
                "title": "Job title", "phone": "Phone", "website": "Website", "timezone": "Time zone",
                "status": "Status", "consent": "Consent basis", "source": "Source", "tags": "Tags"}


def suggest_targets(header: list[str]) -> list[str | None]:
    """Where each column goes by default: a lead field, `custom:<name>`, or None (ignored)."""
    targets: list[str | None] = []
    used: set[str] = set()
    for raw in header:
        name = normal_header(raw)
        target = ALIASES.get(name) or (name if name in KNOWN else None)
        if name in IGNORED or not name:
            target = None
        elif target is None or (target in used and target != "tags"):
            key = lead_input.custom_key(raw)
            if key in lead_input.RESERVED:
                key += "_2"
            target = f"custom:{key}" if key else None
            n = 2
            while target in used:
                target = f"custom:{key}_{n}"
                n += 1
        if target:
            used.add(target)
        targets.append(target)
    return targets


FIELD, TAGS, CUSTOM = 0, 1, 2


def plan_columns(header: list[str], mapping: dict[int, str | None] | None) -> list[tuple[int, int, str]]:
    """(column index, kind, name) for every column that is read. `mapping` (from the import
    page) maps column indexes to targets; None means the suggestions from the header."""
    targets = suggest_targets(header) if mapping is None else [mapping.get(i) or None for i in range(len(header))]
    plan, seen = [], {}
    for index, target in enumerate(targets):
        if not target:
            continue
        if target.startswith("custom:"):
            kind, name = CUSTOM, lead_input.custom_key(target[7:])
            if not name or name in lead_input.RESERVED:
                raise ImportRefused(f"Column {index + 1} cannot be a custom field named {target[7:]!r}; "
                                    "choose another name or a lead field.")
        elif target in KNOWN:
            kind, name = (TAGS if target == "tags" else FIELD), target
        else:
            raise ImportRefused(f"Column {index + 1} is mapped to {target!r}, which is not a lead field.")
        key = f"{kind}:{name}"
        if key in seen and kind != TAGS:
            raise ImportRefused(f"Columns {seen[key] + 1} and {index + 1} both go to {name}; choose one.")
        seen[key] = index
        plan.append((index, kind, name))
    if f"{FIELD}:email" not in seen:
        looks_like_data = any("@" in h and "." in h.rpartition("@")[2] for h in header)
        raise ImportRefused(
            "The first line looks like a lead, not a header: add a header line naming the columns, with at "
            "least `email`." if looks_like_data else
            "No column holds the email address: name a column `email` (or choose it on the import page).",
            code="no_email_column", details={"found": header[:50]})
    return plan


def preview(data_dir: Path | str, principal: Principal, token: str) -> dict:
    """What the mapping step shows: the columns with their suggested targets and the first rows."""
    path = upload_path(data_dir, principal, token)
    with path.open("rb") as fh:
        csvfile = open_csv(fh)
        rows = []
        for _, values in csvfile.rows():
            if isinstance(values, str):
                break
            if values and any(v.strip() for v in values):
                rows.append(values)
                if len(rows) == PREVIEW_ROWS:
                    break
    if not rows:
        raise ImportRefused("The file has a header line but no leads below it.", code="no_rows")
    targets = suggest_targets(csvfile.header)
    return {
        "token": token, "size": path.stat().st_size, "encoding": csvfile.encoding_used,
        "encoding_note": csvfile.encoding_note, "delimiter": csvfile.delimiter_name,
        "columns": [{"index": i, "header": h, "target": t} for i, (h, t) in enumerate(zip(csvfile.header, targets))],
        "rows": [[(r[i] if i < len(r) else "") for i in range(len(csvfile.header))] for r in rows],
    }
