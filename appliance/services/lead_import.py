"""CSV import of leads: streamed, batched, and honest about every row.

- The file is read as a stream (appliance.csv_input), so 100,000 rows never sit in memory
  whole. Rows go to the database in batches of a few thousand, each batch in one short
  transaction: one indexed lookup of the batch's addresses, then executemany for new leads,
  merged leads and tags. Columns go where lead_columns plans.
- Each bad row is reported with the physical line it starts on while the good rows import.
  Duplicates, of existing leads or within the file, are skipped or merged by choice (merge:
  non-empty values replace, tags are added). One audit entry per import, with the counts.
- The import page maps the columns of an upload (kept by services.uploads), then imports
  it inline, or as a job with progress when the file is large.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from ..csv_input import CsvFile, ImportRefused, open_csv, unescape_formula
from ..db import Database, jobs_repo, leads_repo
from ..db.timefmt import utcnow_iso
from ..logs import event
from . import audit, lead_input
from .authz import Principal
from .errors import ServiceError, ValidationError
from .lead_columns import CUSTOM, FIELD, TAGS, plan_columns
from .leads import dumps_custom
from .uploads import upload_path

log = logging.getLogger("mailflow.leads")

BATCH = 5000
MAX_LISTED_ERRORS = 1000
INLINE_MAX_BYTES = 2 * 1024 * 1024  # larger uploads import in the background, with a progress bar
MODES = ("skip", "merge")
# A merge never turns these back into mailable leads (an old list re-imported must not undo an
# unsubscribe or a bounce); a person can still change them on the lead itself.
KEPT_STATUSES = ("unsubscribed", "bounced")
_UNUSUAL = re.compile(r"[\x00-\x1f\x7f]").search  # control characters, CR and LF included


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
                data[name] = unescape_formula(value) if value[0] == "'" else value
        custom: dict[str, str] = {}
        for index, name in self.custom_columns:
            if index < count and (value := values[index]) and not value.isspace():
                if value[0] == "'":
                    value = unescape_formula(value)
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
        body = {"imported": self.imported, "updated": self.updated, "skipped": self.skipped,
                "errors": self.errors, "invalid": self.invalid, "errors_listed": len(self.errors),
                "rows": self.rows, "duplicates_in_file": self.in_file, "mode": self.mode,
                "encoding": csvfile.encoding_used, "delimiter": csvfile.delimiter}
        if csvfile.encoding_note:
            body["encoding_note"] = csvfile.encoding_note
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


# -- the import page: an upload, inline or as a job with progress -------------------------

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
            jobs_repo.set_import_progress(conn, job_id, min(total, max(0, line - 1)))

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
                    jobs_repo.set_import_progress(conn, job_id, total)
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
