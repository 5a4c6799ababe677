"""CSV import of leads: streamed, batched, and honest about every row.

- The file is read as a stream (a 64 KiB head to detect the encoding, then one record at a
  time), so 100,000 rows never sit in memory whole. Rows go to the database in batches of a
  few thousand, each batch in one short transaction: one indexed lookup of the batch's
  addresses, then executemany for new leads, merged leads and tags.
- Encoding: UTF-8 (with or without BOM) or UTF-16 with BOM; a file that is not UTF-8 is read
  as Windows-1252 (a superset of Latin-1), and the result says so. Delimiter: comma,
  semicolon, tab or pipe, whichever the header line uses.
- Each bad row is reported with the physical line it starts on (a quoted value may span
  lines) while the good rows import. Duplicates, of existing leads or within the file, are
  skipped or merged by choice (merge: non-empty values replace, tags are added).
- One audit entry per import, with the counts.

The UI's column mapping needs the file twice (preview, then import), so uploads from the
page are kept in `<data_dir>/tmp` (0700) under a random name for at most an hour.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from ..db import Database, jobs_repo, leads_repo
from ..db.timefmt import utcnow_iso
from ..logs import event
from . import audit, lead_input
from .authz import Principal
from .errors import NotFound, ServiceError, ValidationError
from .leads import dumps_custom

log = logging.getLogger("mailflow.leads")

BATCH = 5000
HEAD_BYTES = 64 * 1024
MAX_LISTED_ERRORS = 1000
PREVIEW_ROWS = 5
MODES = ("skip", "merge")
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
FORMULA_START = ("=", "+", "-", "@")
# A merge never turns these back into mailable leads (an old list re-imported must not undo an
# unsubscribe or a bounce); a person can still change them on the lead itself.
KEPT_STATUSES = ("unsubscribed", "bounced")
_UNUSUAL = re.compile(r"[\x00-\x1f\x7f]").search  # control characters, CR and LF included
ENCODING_NOTES = {
    "cp1252": "The file is not UTF-8; it was read as Windows-1252 (Latin-1). Check accented names.",
    "utf-16": "The file is UTF-16 (as Excel saves \u201cUnicode text\u201d); it was converted.",
}

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


class ImportRefused(ServiceError):
    status = 422
    code = "import_refused"


# -- reading --------------------------------------------------------------------------------

_decoding = threading.local()


def _cp1252_fallback(exc: UnicodeError):
    """Bytes that are not UTF-8 inside a file that began as UTF-8: read them as Windows-1252."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _decoding.fallbacks = getattr(_decoding, "fallbacks", 0) + 1
    return exc.object[exc.start:exc.end].decode("cp1252", "replace"), exc.end


codecs.register_error("mailflow-cp1252-fallback", _cp1252_fallback)


class _Joined(io.RawIOBase):
    """The head already read (to detect the encoding) followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_head(stream: IO[bytes]) -> bytes:
    parts, size = [], 0
    while size < HEAD_BYTES:
        data = stream.read(HEAD_BYTES - size)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def _encoding(head: bytes) -> tuple[str, str, str]:
    """(codec, name to report, error handler)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8", "mailflow-cp1252-fallback"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16", "replace"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError:
        return "cp1252", "cp1252", "replace"
    return "utf-8", "utf-8", "mailflow-cp1252-fallback"


def _delimiter(line: str) -> str:
    """The candidate used most often outside quotes in the header line (comma if none)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


@dataclass
class CsvFile:
    """A CSV stream with its header read: `rows()` yields (line, values) for each record, the
    line being where the record starts. A record the csv module cannot read at all ends the
    file: it is yielded once as (line, message)."""

    header: list[str]
    encoding: str
    delimiter: str
    _reader: object = field(repr=False)
    _offset: int = field(repr=False)

    def rows(self) -> Iterator[tuple[int, list[str] | str]]:
        reader = self._reader
        line = self._offset + reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, f"the file could not be read from here on ({exc})"
                return
            start, line = line, self._offset + reader.line_num + 1
            yield start, values

    @property
    def encoding_used(self) -> str:
        """The encoding to report: a UTF-8 file with stray Windows-1252 bytes counts as cp1252."""
        return "cp1252" if self.encoding == "utf-8" and getattr(_decoding, "fallbacks", 0) else self.encoding


def open_csv(stream: IO[bytes]) -> CsvFile:
    """Detect the encoding and delimiter and read the header line (blank lines before it are
    skipped). Raises ImportRefused for an empty file."""
    head = _read_head(stream)
    codec, name, errors = _encoding(head)
    _decoding.fallbacks = 0
    text = io.TextIOWrapper(io.BufferedReader(_Joined(head, stream), HEAD_BYTES), encoding=codec,
                            errors=errors, newline="")
    lines = iter(text)
    blank = 0
    for first in lines:
        if first.strip():
            break
        blank += 1
    else:
        raise ImportRefused("The file is empty.", code="empty_file")
    delimiter = _delimiter(first)
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, quotechar='"', doublequote=True,
                        strict=False)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except csv.Error as exc:
        raise ImportRefused(f"The header line could not be read ({exc}).") from None
    return CsvFile(header, name, delimiter, reader, blank)


# -- columns --------------------------------------------------------------------------------

def _normal_header(header: str) -> str:
    return re.sub(r"[\s\-./]+", "_", header.strip().lower()).strip("_")


def suggest_targets(header: list[str]) -> list[str | None]:
    """Where each column goes by default: a lead field, `custom:<name>`, or None (ignored)."""
    targets: list[str | None] = []
    used: set[str] = set()
    for raw in header:
        name = _normal_header(raw)
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


def _options(mode: str | None, tag: str | None, source: str | None) -> tuple[str, list[str], str]:
    problems = {}
    mode = (mode or "skip").strip().lower()
    if mode not in MODES:
        problems["mode"] = "Choose skip (leave existing leads alone) or merge (fill in and add tags)."
    try:
        tags = lead_input.parse_tags(tag or "")
    except ValueError as exc:
        problems["tag"], tags = str(exc), []
    try:
        source = lead_input.PARSERS["source"](source or "")
    except ValueError as exc:
        problems["source"], source = str(exc), ""
    if problems:
        raise ValidationError(problems, "Some import options need attention.")
    return mode, tags, source


# -- importing ------------------------------------------------------------------------------

@dataclass
class _Pending:
    fields: dict
    custom: dict
    tags: frozenset


class _Importer:
    def __init__(self, db: Database, plan: list[tuple[int, int, str]], width: int, mode: str, tags: list[str],
                 source: str):
        self.db, self.width, self.mode, self.source = db, width, mode, source
        self.field_columns = [(i, name) for i, kind, name in plan if kind == FIELD]
        self.tag_columns = [i for i, kind, _ in plan if kind == TAGS]
        self.custom_columns = [(i, name) for i, kind, name in plan if kind == CUSTOM]
        self.base_tags = frozenset(tags)
        self._tag_sets: dict[str, frozenset] = {}
        self.pending: dict[str, _Pending] = {}
        self.imported = self.updated = self.skipped = self.invalid = self.in_file = self.rows = self.batches = 0
        self.errors: list[dict] = []
        self.first_new_id = leads_repo.max_id(db.connection()) + 1

    def error(self, line: int, message: str) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"line": line, "error": message})

    def _tags(self, text: str) -> frozenset:
        """The option's tags plus a row's own (rows repeat the same few lists: remembered)."""
        found = self._tag_sets.get(text)
        if found is None:
            found = self.base_tags.union(lead_input.parse_tags(text))
            if len(self._tag_sets) < 10000:
                self._tag_sets[text] = found
        return found

    def add(self, line: int, values: list[str]) -> None:
        """Validate one record and queue it (a batch is written when full)."""
        count = len(values)
        data: dict[str, str] = {}
        problems: dict[str, str] = {}
        for index, name in self.field_columns:
            if index < count and (value := values[index]) and not value.isspace():
                data[name] = value[1:] if value[0] == "'" and value[1:2] in FORMULA_START else value
        custom: dict[str, str] = {}
        for index, name in self.custom_columns:
            if index < count and (value := values[index]) and not value.isspace():
                if value[0] == "'" and value[1:2] in FORMULA_START:
                    value = value[1:]  # undo the formula escaping of our own export
                if len(value) <= lead_input.MAX_CUSTOM_VALUE and not _UNUSUAL(value):
                    custom[name] = value.strip()  # the common case, without a call
                    continue
                try:
                    custom[name] = lead_input.custom_value(value)
                except ValueError as exc:
                    problems[name] = str(exc)
        tags = self.base_tags
        if self.tag_columns:
            text = ",".join(values[i] for i in self.tag_columns if i < count and values[i])
            if text:
                try:
                    tags = self._tags(text)
                except ValueError as exc:
                    problems["tags"] = str(exc)
        if count > self.width and any(v.strip() for v in values[self.width:]):
            problems["row"] = f"{count} values but the header names {self.width} columns"
        fields, field_problems = lead_input.clean_text(data)
        if field_problems or problems:
            self.error(line, lead_input.describe({**field_problems, **problems}))
            return
        email = fields.pop("email")
        earlier = self.pending.get(email)
        if earlier is None:
            self.pending[email] = _Pending(fields, custom, tags)
            if len(self.pending) >= BATCH:
                self.flush()
            return
        self.in_file += 1
        if self.mode == "skip":
            self.skipped += 1
            return
        self.updated += 1
        earlier.fields.update(fields)
        earlier.custom.update(custom)
        earlier.tags = earlier.tags | tags

    def flush(self) -> None:
        """Write the queued rows: one lookup of their addresses, then executemany for new
        leads, merged leads and tags, all in one short transaction."""
        if not self.pending:
            return
        now = utcnow_iso()
        inserts, new_tags, updates, tag_pairs = [], [], [], []
        with self.db.transaction() as conn:
            existing = {r["email"]: r for r in leads_repo.by_emails(conn, list(self.pending))}
            for email, p in self.pending.items():
                row = existing.get(email)
                if row is None:
                    f = p.fields
                    inserts.append((email, email.rpartition("@")[2], f.get("first_name", ""), f.get("last_name", ""),
                                    f.get("company", ""), f.get("title", ""), f.get("phone", ""),
                                    f.get("website", ""), f.get("timezone", ""),
                                    dumps_custom(p.custom) if p.custom else "{}", f.get("status", "new"),
                                    f.get("consent", "unknown"), f.get("source") or self.source, now, now))
                    new_tags.append(p.tags)
                    continue
                if row["id"] >= self.first_new_id:
                    self.in_file += 1
                if self.mode == "skip":
                    self.skipped += 1
                    continue
                self.updated += 1
                merged = self._merge(row, p, now)
                if merged is not None:
                    updates.append(merged)
                tag_pairs.extend((row["id"], tag) for tag in p.tags)
            last = leads_repo.max_id(conn)
            leads_repo.insert_many(conn, inserts)
            if leads_repo.max_id(conn) - last == len(inserts):
                # rowids were handed out in order (largest + 1), so the new ids are known
                tag_pairs.extend((last + n, tag) for n, tags in enumerate(new_tags, 1) for tag in tags)
            else:
                leads_repo.add_tags_by_email(conn, [(tag, row[0]) for row, tags in zip(inserts, new_tags)
                                                    for tag in tags])
            leads_repo.update_many(conn, updates)
            leads_repo.add_tags(conn, tag_pairs)
        self.imported += len(inserts)
        self.pending.clear()
        self.batches += 1

    def _merge(self, row, p: _Pending, now: str) -> tuple | None:
        """The row's new values (update_many's order), or None when nothing changes."""
        values = {name: row[name] for name in leads_repo.WRITABLE[2:]}
        values.update(p.fields)
        if row["status"] in KEPT_STATUSES:
            values["status"] = row["status"]
        if self.source and not row["source"] and "source" not in p.fields:
            values["source"] = self.source
        if p.custom:
            custom = json.loads(row["custom"])
            custom.update(p.custom)
            values["custom"] = dumps_custom(custom)
        ordered = tuple(values[name] for name in leads_repo.WRITABLE[2:])
        if ordered == tuple(row[name] for name in leads_repo.WRITABLE[2:]):
            return None
        return (*ordered, now, row["id"])

    def result(self, csvfile: CsvFile) -> dict:
        encoding = csvfile.encoding_used
        body = {"imported": self.imported, "updated": self.updated, "skipped": self.skipped,
                "errors": self.errors, "invalid": self.invalid, "errors_listed": len(self.errors),
                "rows": self.rows, "duplicates_in_file": self.in_file, "mode": self.mode,
                "encoding": encoding, "delimiter": csvfile.delimiter}
        if encoding in ENCODING_NOTES:
            body["encoding_note"] = ENCODING_NOTES[encoding]
        return body


def import_csv(db: Database, principal: Principal, stream: IO[bytes], *, mode: str | None = "skip",
               tag: str | None = None, source: str | None = None, mapping: dict[int, str | None] | None = None,
               progress: Callable[[int], None] | None = None) -> dict:
    """Import leads from a CSV stream. Returns
    {"imported", "updated", "skipped", "errors": [{"line", "error"}], ...} where
    rows = imported + updated + skipped + invalid (a repeated address is skipped, or in
    merge mode counted as updated); at most MAX_LISTED_ERRORS errors are listed."""
    principal.require("member", "write")
    mode, tags, source = _options(mode, tag, source)
    csvfile = open_csv(stream)
    plan = plan_columns(csvfile.header, mapping)
    width = len(csvfile.header)
    run = _Importer(db, plan, width, mode, tags, source)
    finished = False
    try:
        for line, values in csvfile.rows():
            if isinstance(values, str):
                run.rows += 1
                run.error(line, values)
                break
            if not values or not any(v.strip() for v in values):
                continue
            run.rows += 1
            batches = run.batches
            run.add(line, values)
            if progress is not None and run.batches != batches:
                progress(line)
        run.flush()
        finished = True
    finally:
        if run.rows and (finished or run.imported or run.updated):
            metadata = {k: v for k, v in run.result(csvfile).items()
                        if k not in ("errors", "delimiter", "encoding_note")}
            metadata.update(tag=tags, source=source, complete=finished)
            with db.transaction() as conn:
                audit.record(conn, principal.actor(), "lead.imported", metadata=metadata)
    if not run.rows:
        raise ImportRefused("The file has a header line but no leads below it.", code="no_rows")
    event(log, "leads.imported", rows=run.rows, imported=run.imported, updated=run.updated,
          skipped=run.skipped, invalid=run.invalid)
    return run.result(csvfile)


# -- the import page: uploads kept between preview and import -------------------------------
# An upload is the customer's CSV in plaintext (the database is encrypted, this file is not).
# It lives in <data_dir>/tmp (0700, the file 0600; never /tmp: the unit has PrivateTmp, and
# the data directory is where the operator protects data at rest), is deleted as soon as its
# import finishes or is cancelled, and in any case within the hour: purge_stale_uploads()
# runs every PURGE_INTERVAL as a maintenance job (and on every visit to the import page) and
# deletes uploads older than UPLOAD_MAX_AGE, leftovers of a crash included.

UPLOAD_PREFIX = "lead-import-"
PURGE_INTERVAL = 5 * 60
UPLOAD_MAX_AGE = 60 * 60 - PURGE_INTERVAL
INLINE_MAX_BYTES = 2 * 1024 * 1024  # larger files import in the background, with a progress bar
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def upload_dir(data_dir: Path | str) -> Path:
    path = Path(data_dir) / "tmp"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def new_upload(data_dir: Path | str) -> tuple[str, IO[bytes]]:
    """A fresh, private file for an upload: (token, file open for writing and reading)."""
    token = secrets.token_urlsafe(18)
    path = upload_dir(data_dir) / f"{UPLOAD_PREFIX}new-{token}.csv"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return token, os.fdopen(fd, "w+b")


def _owned(data_dir: Path | str, principal: Principal, token: str) -> Path:
    if not _TOKEN.match(token or ""):
        raise NotFound("No such upload.")
    return upload_dir(data_dir) / f"{UPLOAD_PREFIX}u{principal.user_id}-{token}.csv"


def claim_upload(data_dir: Path | str, principal: Principal, token: str) -> None:
    """Bind a new upload to the person who sent it (only they can preview or import it)."""
    principal.require("member", "write")
    if not _TOKEN.match(token or ""):
        raise NotFound("No such upload.")
    os.replace(upload_dir(data_dir) / f"{UPLOAD_PREFIX}new-{token}.csv", _owned(data_dir, principal, token))


def discard_new_upload(data_dir: Path | str, token: str) -> None:
    if _TOKEN.match(token or ""):
        (upload_dir(data_dir) / f"{UPLOAD_PREFIX}new-{token}.csv").unlink(missing_ok=True)


def discard_upload(data_dir: Path | str, principal: Principal, token: str) -> None:
    _owned(data_dir, principal, token).unlink(missing_ok=True)


def upload_path(data_dir: Path | str, principal: Principal, token: str) -> Path:
    path = _owned(data_dir, principal, token)
    if not path.exists():
        raise NotFound("This upload has expired or was already imported. Upload the file again.",
                       code="upload_gone")
    return path


def purge_stale_uploads(data_dir: Path | str, max_age: float = UPLOAD_MAX_AGE, now: float | None = None) -> int:
    """Delete uploads older than max_age seconds (abandoned imports, a crash mid-import)."""
    directory = Path(data_dir) / "tmp"
    if not directory.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for path in directory.glob(f"{UPLOAD_PREFIX}*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


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
    encoding = csvfile.encoding_used
    targets = suggest_targets(csvfile.header)
    return {
        "token": token, "size": path.stat().st_size, "encoding": encoding,
        "encoding_note": ENCODING_NOTES.get(encoding), "delimiter": DELIMITERS[csvfile.delimiter],
        "columns": [{"index": i, "header": h, "target": t} for i, (h, t) in enumerate(zip(csvfile.header, targets))],
        "rows": [[(r[i] if i < len(r) else "") for i in range(len(csvfile.header))] for r in rows],
    }


@dataclass(frozen=True)
class UploadImport:
    """The outcome of starting an import from the page: a result now, or a job to watch."""

    result: dict | None = None
    job_id: int | None = None


def import_upload(db: Database, principal: Principal, data_dir: Path | str, token: str, *,
                  mapping: dict[int, str | None], mode: str | None, tag: str | None, source: str | None,
                  wait: bool = False) -> UploadImport:
    """Run the import of an upload: inline for a small file, in the background (a job with
    progress) for a large one. The upload is deleted once the import is over either way."""
    principal.require("member", "write")
    path = upload_path(data_dir, principal, token)
    options = dict(mapping=mapping, mode=mode, tag=tag, source=source)
    _options(mode, tag, source)
    with path.open("rb") as fh:  # refuse a bad mapping now, on the page, not in a failed job
        plan_columns(open_csv(fh).header, mapping)
    if path.stat().st_size <= INLINE_MAX_BYTES:
        try:
            with path.open("rb") as fh:
                return UploadImport(result=import_csv(db, principal, fh, **options))
        finally:
            path.unlink(missing_ok=True)
    total = _count_records(path)
    with db.transaction() as conn:
        job_id = jobs_repo.create(conn, "lead_import", total, principal.user_id, utcnow_iso())

    def report(line: int) -> None:
        with db.transaction() as conn:
            leads_repo.set_import_progress(conn, job_id, min(total, max(0, line - 1)))

    def run() -> None:
        status, body = "failed", {}
        try:
            with path.open("rb") as fh:
                body = import_csv(db, principal, fh, progress=report, **options)
            status = "done"
        except ServiceError as exc:
            body = {"error": exc.message}
        except Exception as exc:  # the job must end as failed, never stay "running"
            event(log, "leads.import_failed", level=logging.ERROR, job=job_id, error=f"{type(exc).__name__}: {exc}")
            body = {"error": "The import stopped unexpectedly; rows imported so far were kept. See the service log."}
        finally:
            path.unlink(missing_ok=True)
        try:
            with db.transaction() as conn:
                if status == "done":
                    leads_repo.set_import_progress(conn, job_id, total)
                jobs_repo.finish(conn, job_id, status, json.dumps(body), utcnow_iso())
        finally:
            db.close_thread_connection()

    if wait:
        run()
    else:
        threading.Thread(target=run, name=f"mailflow-lead-import-{job_id}", daemon=True).start()
    return UploadImport(job_id=job_id)


def _count_records(path: Path) -> int:
    """Lines after the header: the progress bar's total (a value spanning lines counts more than
    once, so the bar may finish a little early; it is set to full when the import ends)."""
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)
