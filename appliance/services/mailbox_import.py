"""Bulk connect by CSV: every row validated and reported by line number, good rows saved even
when others fail, then the live checks run in the background with bounded concurrency.

The CSV is read as a stream (appliance.csv_input: one row at a time, UTF-8 or Windows-1252,
the delimiter sniffed), so a file of thousands of rows never sits in memory whole. Headers
are matched loosely (case, spaces, common aliases).
"""

from __future__ import annotations

from typing import IO, Iterator

from ..csv_input import ImportRefused, normal_header, open_csv
from ..db import Database, mailboxes_repo
from ..db.timefmt import utcnow_iso
from ..crypto import SecretBox, location
from . import audit, jobs, mailboxes
from .authz import Principal
from .errors import ValidationError
from .mailbox_input import PARSERS, parse_mailbox

MAX_ROWS = 20000
BATCH = 200
ALIASES = {"app_password": "password", "name": "display_name", "from_name": "display_name",
           "sender_name": "display_name", "user": "username", "login": "username", "smtp_server": "smtp_host",
           "imap_server": "imap_host", "daily_cap": "daily_limit", "limit": "daily_limit", "tag": "tags",
           "preset": "provider"}
KNOWN = set(PARSERS) | {"password", "tls_ca_pem", "tls_pin_sha256"}


def read_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each data row: the physical line the row starts on."""
    csvfile = open_csv(stream)
    columns = [normal_header(h, ALIASES) for h in csvfile.header]
    if "email" not in columns:
        raise ImportRefused("The first line must be a header naming the columns, with at least "
                            "`email` and `password`.", details={"found": csvfile.header})
    unknown = sorted({c for c in columns if c and c not in KNOWN})
    if unknown:
        raise ImportRefused(f"Unknown column(s): {', '.join(unknown)}.", details={"known": sorted(KNOWN)})
    for line, values in csvfile.rows():
        if isinstance(values, str):  # unreadable from here on
            yield line, {"__error__": values}
            return
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(columns):
            yield line, {"__error__": f"{len(values)} values but {len(columns)} columns"}
            continue
        yield line, {c: v for c, v in zip(columns, values) if c}


def import_csv(db: Database, keys, principal: Principal, stream: IO[bytes], *, check: bool = True,
               wait: bool = False) -> dict:
    principal.require("admin", "admin")
    box = SecretBox(keys.secrets)
    created: list[int] = []
    errors: list[dict] = []
    seen: set[str] = set()
    batch: list[tuple[int, dict, str]] = []

    def flush() -> None:
        now = utcnow_iso()
        with db.transaction() as conn:
            for line, fields, password in batch:
                if mailboxes_repo.by_email(conn, fields["email"]):
                    errors.append({"line": line, "error": f"{fields['email']} is already connected"})
                    continue
                tags = fields.pop("tags", [])
                mailbox_id = mailboxes_repo.insert(conn, fields, now)
                mailboxes_repo.set_password(conn, mailbox_id,
                                            box.seal(password, location("mailboxes", mailbox_id, "password")))
                mailboxes_repo.set_tags(conn, mailbox_id, tags)
                audit.record(conn, principal.actor(), "mailbox.connected", target_type="mailbox",
                             target_id=mailbox_id, metadata={"email": fields["email"], "via": "csv", "line": line})
                created.append(mailbox_id)
        batch.clear()

    rows = 0
    for line, row in read_rows(stream):
        rows += 1
        if rows > MAX_ROWS:
            errors.append({"line": line, "error": f"more than {MAX_ROWS} rows; the rest was not read"})
            break
        if "__error__" in row:
            errors.append({"line": line, "error": row["__error__"]})
            continue
        try:
            fields, password = parse_mailbox(row)
        except ValidationError as exc:
            errors.append({"line": line, "error": "; ".join(f"{k}: {v}" for k, v in exc.fields.items())})
            continue
        if fields["email"] in seen:
            errors.append({"line": line, "error": f"{fields['email']} appears twice in this file"})
            continue
        seen.add(fields["email"])
        batch.append((line, fields, password))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    errors.sort(key=lambda e: e["line"])
    result = {"imported": len(created), "skipped": len(errors), "errors": errors, "job": None}
    if check and created:
        actor = principal.actor()

        def check_one(mailbox_id: int) -> bool:
            outcome = mailboxes.check(db, keys, mailbox_id, actor)
            return outcome["smtp"]["ok"] and outcome["imap"]["ok"]

        job_id = jobs.start(db, "mailbox_check", created, check_one, created_by=principal.user_id, wait=wait)
        result["job"] = jobs.get(db, job_id)
    return result
