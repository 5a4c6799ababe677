"""One mailbox's side of the sync: its IMAP session, kept open between cycles, and the cursors
of the folders it reads (INBOX and the junk folder).

A cycle reads the junk folder first and INBOX last, with a STATUS per folder (one round trip
that says whether anything is new). Where the server offers IDLE, the session then waits in
IDLE on INBOX, so a reply is seen within about a second instead of at the next poll.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable

from ..db import Database, sync_repo
from ..logs import event
from ..mail.imap import ImapCommandError, ImapSession, validate_folder_name
from . import mailboxes
from .audit import Actor
from .sync_folder import FolderCursor, FolderResult, Ingest, Limits, record_error, sync_folder

log = logging.getLogger("mailflow.sync")

# Looking back this far before the mailbox was connected when a folder is read the first time
# (or renumbered): replies to our mail cannot be older, and years of history are not read.
LOOKBACK_DAYS = 7
# RFC 2177: a server may end an IDLE after 30 minutes (and RFC 3501 autologout is at least 30
# minutes), so every session is used, and IDLE re-issued, at least this often.
RENEW_SECONDS = 25 * 60
# Connection problems that a person has to fix: they count towards pausing the mailbox, like
# a failed live check (three failed sign-ins in a row pause it).
ACCOUNT_PROBLEMS = frozenset({"auth_failed", "certificate_untrusted", "tls_failed", "starttls_not_offered",
                              "bad_security"})
_SESSION_COLUMNS = ("imap_host", "imap_port", "imap_security", "username", "password_enc", "tls_ca_pem",
                    "tls_pin_sha256", "junk_folder")


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: exponential, capped, with jitter so that a server coming back is not
    hit by every mailbox at the same instant."""
    base: float = 2.0
    cap: float = 300.0

    def delay(self, failures: int, rng: random.Random) -> float:
        return min(self.cap, self.base * 2 ** max(0, failures - 1)) * rng.uniform(0.5, 1.0)


def session_key(row) -> tuple:
    """What an open session depends on; when it changes, the session is replaced."""
    return tuple(row[c] for c in _SESSION_COLUMNS)


class MailboxSync:
    """Used by one worker at a time; the engine's bookkeeping fields are guarded by its lock."""

    def __init__(self, row):
        self.mailbox_id: int = row["id"]
        self.key = session_key(row)
        self.junk_folder: str | None = row["junk_folder"]
        self.since = date.fromisoformat(row["created_at"][:10]) - timedelta(days=LOOKBACK_DAYS)
        self.session: ImapSession | None = None
        self.cursors: list[FolderCursor] = []
        self.can_idle = False
        # the engine's bookkeeping
        self.busy = False
        self.dirty = False        # IDLE announced something while a worker was busy with it
        self.removed = False      # paused, deleted, in error, or its settings changed
        self.next_due = 0.0       # monotonic time of the next full cycle
        self.retry_at = 0.0       # no reconnect before this (backoff)
        self.failures = 0
        self.idle_token: object | None = None  # set while the IDLE watcher has the session
        self.idle_fd = -1
        self.fetched = 0
        self.new = 0

    def connect(self, db: Database, keys) -> None:
        """Open the session (credentials read through the audited path) and load the cursors.
        Raises TransportError."""
        creds = mailboxes.credentials(db, keys, self.mailbox_id, Actor.system("scheduler"), "sync")
        session = ImapSession(creds.imap, creds.username, creds.password).open()
        try:
            self.can_idle = b"IDLE" in session.capabilities()
            self.cursors = self._cursors(db, session)
        except BaseException:
            session.abort()
            raise
        self.session = session

    def _cursors(self, db: Database, session: ImapSession) -> list[FolderCursor]:
        folders = [("INBOX", "inbox")]
        junk = self.junk_folder or session.folders().junk
        if junk and junk.upper() != "INBOX":
            try:
                folders.insert(0, (validate_folder_name(junk), "junk"))
            except ValueError:  # never sent to the server: CR/LF would inject a command
                event(log, "sync.folder_refused", level=logging.WARNING, mailbox=self.mailbox_id,
                      folder=ascii(junk)[:80])
        with db.transaction(durable=False) as conn:  # redone at the next session
            rows = [sync_repo.ensure(conn, self.mailbox_id, folder, role) for folder, role in folders]
            sync_repo.forget_others(conn, self.mailbox_id, [folder for folder, _ in folders])
        return [FolderCursor.from_row(row) for row in rows]

    def run(self, db: Database, *, ingest: Ingest, limits: Limits, stopping: Callable[[], bool],
            inbox_only: bool, idle: bool) -> FolderResult:
        """One cycle on the open session (all folders, or INBOX after an IDLE event), then back
        into IDLE when asked and offered. Raises TransportError when the connection breaks."""
        session = self.session
        before = (self.fetched, self.new)
        if session.idling:
            session.idle_done()
        for cursor in self.cursors:
            if stopping() or (inbox_only and cursor.role != "inbox"):
                continue
            self._folder(db, cursor, ingest=ingest, limits=limits, stopping=stopping)
        if idle and self.can_idle and not stopping():
            self._settle_inbox(db, ingest=ingest, limits=limits, stopping=stopping)
            session.idle_start()
        return FolderResult(self.fetched - before[0], self.new - before[1])

    def _folder(self, db, cursor, **kw) -> None:
        result = FolderResult()
        try:
            sync_folder(db, self.session, self.mailbox_id, cursor, since=self.since, result=result, **kw)
        except (ImapCommandError, ValueError) as exc:  # this folder only; the session goes on
            event(log, "sync.folder_failed", level=logging.WARNING, mailbox=self.mailbox_id, folder=cursor.folder,
                  error=str(exc)[:200])
            record_error(db, self.mailbox_id, cursor, str(exc))
        finally:  # also what was read before a connection broke
            self.fetched += result.fetched
            self.new += result.new

    def _settle_inbox(self, db, **kw) -> None:
        """Leave INBOX selected with nothing unread before IDLE: IDLE reports only what changes
        after that, so mail that came in during this cycle is read now."""
        session = self.session
        inbox = next(c for c in self.cursors if c.role == "inbox")
        for _ in range(3):
            if session.selected != inbox.folder:
                state = session.examine(inbox.folder)
                if state.uidvalidity == inbox.uidvalidity and state.uidnext and state.uidnext <= inbox.last_uid + 1:
                    break
                self._folder(db, inbox, examined=state, **kw)
            elif session.new_mail_signalled():
                self._folder(db, inbox, **kw)
            else:
                break

    def record_failure(self, db: Database, code: str, message: str, *, connecting: bool) -> None:
        """A connection problem: shown on the folders; an account problem at sign-in also
        counts towards pausing the mailbox."""
        if connecting and code in ACCOUNT_PROBLEMS:
            mailboxes.record_transport_failure(db, self.mailbox_id, code, message)
        for cursor in self.cursors:
            record_error(db, self.mailbox_id, cursor, message)

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def abort(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.abort()
