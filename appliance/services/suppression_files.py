"""CSV files of the suppression list: import (each bad row listed by line number, the good
ones added in short batches, one audit entry) and export (streamed, formula-escaped, audited).

An import is read as a stream by appliance.csv_input (UTF-8 or Windows-1252, the delimiter
sniffed, the export's formula escaping undone, so an exported file imports unchanged). It
may have a header naming a `value`, `email` or `domain` column (with `reason`, `source` and
`kind` optional), or be a single column of addresses and domains.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import IO, Iterator

from ..csv_input import ImportRefused, normal_header, open_csv, unescape_formula
from ..db import Database, suppressions_repo
from ..db.timefmt import utcnow_iso
from . import audit
from .authz import Principal
from .errors import ValidationError
from .suppressions import parse_filters, parse_reason, parse_source, parse_value


# -- CSV import -----------------------------------------------------------------------------

IMPORT_BATCH = 1000
MAX_LISTED_ERRORS = 1000
VALUE_COLUMNS = ("value", "email", "domain")  # the first present, non-empty one is the row's value
ALIASES = {"email_address": "email", "e_mail": "email", "emails": "email", "address": "email",
           "domains": "domain", "domain_name": "domain", "entry": "value"}
OPTIONAL_COLUMNS = ("reason", "source", "kind")


def read_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, {"value", "reason"?, "source"?, "kind"?}) per data row, read as a stream.

    With a header line, the value comes from a `value`, `email` or `domain` column (other
    columns are ignored). Without one, the file is a single column of values, from line 1.
    A one-column file whose first cell looks like a word rather than an address or a domain
    is taken as having a header. A part the csv module cannot read ends the file with a row
    {"__error__": message}."""
    csvfile = open_csv(stream)
    first = csvfile.header
    columns = [normal_header(h, ALIASES) for h in first]
    if any(c in VALUE_COLUMNS for c in columns):
        value_columns = [c for c in VALUE_COLUMNS if c in columns]
    elif len([c for c in first if c]) == 1 and ("@" in first[0] or "." in first[0]):
        value_columns, columns = ["value"], ["value"]  # no header: the first line is data
        yield csvfile.header_line, {"value": unescape_formula(first[0])}
    elif len(first) == 1:
        value_columns, columns = ["value"], ["value"]  # a one-column file with its own header word
    else:
        raise ImportRefused("The first line must be a header with a `value`, `email` or `domain` column "
                            "(optional: `reason`, `source`), or the file must be one column of addresses.",
                            details={"found": first[:20]})
    for line, values in csvfile.rows():
        if isinstance(values, str):
            yield line, {"__error__": values}
            return
        if not any(v.strip() for v in values):
            continue
        cells = {c: unescape_formula(v) for c, v in zip(columns, values) if c}
        value = next((cells[c] for c in value_columns if cells.get(c, "").strip()), "")
        row = {"value": value}
        for name in OPTIONAL_COLUMNS:
            if name in cells:
                row[name] = cells[name]
        yield line, row


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
            if "__error__" in row:
                bad(line, row["__error__"])
                continue
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
