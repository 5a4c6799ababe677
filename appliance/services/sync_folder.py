"""One folder of one mailbox, read incrementally.

A folder's cursor (sync_folders: its UIDVALIDITY and the highest UID read) moves only after
every message up to it was handed to inbound.ingest, chunk by chunk. A crash or a connection
dropped in the middle of a fetch therefore loses nothing; what is read again is harmless,
because ingest recognises a message it has seen (mailbox + Message-ID). A changed UIDVALIDITY
means the server renumbered the folder: it is read again from the start, again without any
effect happening twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Callable, Protocol

from ..db import Database, sync_repo
from ..db.timefmt import utcnow_iso
from ..logs import event
from ..mail.imap import FolderState, ImapSession
from ..mail.imap_fetch import CHUNK_BYTES, CHUNK_MESSAGES, MAX_MESSAGE_BYTES, fetch_messages

log = logging.getLogger("mailflow.sync")

# An unchanged folder's synced_at is written at most this often: a cycle over thousands of
# quiet mailboxes should not cost thousands of write transactions.
SYNCED_AT_EVERY = 300
# A message whose recording keeps failing is retried on this many cycles, then skipped (and
# logged as an error) so that it cannot hold back every later message of its folder.
INGEST_ATTEMPTS = 3


class Ingest(Protocol):
    def __call__(self, db: Database, mailbox_id: int, *, folder: str, uid: int | None, raw: bytes,
                 truncated: bool = False) -> int | None: ...


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_MESSAGE_BYTES
    chunk_messages: int = CHUNK_MESSAGES
    chunk_bytes: int = CHUNK_BYTES


@dataclass
class FolderCursor:
    folder: str
    role: str  # 'inbox' | 'junk'
    uidvalidity: int | None = None
    last_uid: int = 0
    synced_at: float = 0.0  # monotonic time of the last write
    last_error: str | None = None
    failing_uid: int | None = None
    failing_attempts: int = 0

    @classmethod
    def from_row(cls, row) -> "FolderCursor":
        return cls(row["folder"], row["role"], row["uidvalidity"], row["last_uid"], last_error=row["last_error"])


@dataclass
class FolderResult:
    fetched: int = 0
    new: int = 0


def save(db: Database, mailbox_id: int, cursor: FolderCursor) -> None:
    with db.transaction(durable=False) as conn:  # redone: the mail after the cursor is read again
        sync_repo.save(conn, mailbox_id, cursor.folder, uidvalidity=cursor.uidvalidity, last_uid=cursor.last_uid,
                       synced_at=utcnow_iso(), last_error=cursor.last_error)
    cursor.synced_at = time.monotonic()


def record_error(db: Database, mailbox_id: int, cursor: FolderCursor, error: str) -> None:
    cursor.last_error = error[:300]
    save(db, mailbox_id, cursor)


def sync_folder(db: Database, session: ImapSession, mailbox_id: int, cursor: FolderCursor, *, ingest: Ingest,
                since: date, limits: Limits = Limits(), stopping: Callable[[], bool] = lambda: False,
                examined: FolderState | None = None, result: FolderResult | None = None) -> FolderResult:
    """Read what is new in one folder. `examined`: the caller has just EXAMINEd this folder.
    `result` counts as it goes, so it also tells what was done before an exception.
    Raises TransportError when the connection breaks; the cursor then holds what was recorded."""
    result = FolderResult() if result is None else result
    if examined is None and session.selected == cursor.folder:
        examined = session.examine(cursor.folder)  # STATUS on the selected folder answers from a stale view
    state = examined or session.status(cursor.folder)
    if state.uidvalidity == cursor.uidvalidity and state.uidnext is not None and state.uidnext <= cursor.last_uid + 1:
        if cursor.last_error or time.monotonic() - cursor.synced_at > SYNCED_AT_EVERY:
            cursor.last_error = None
            save(db, mailbox_id, cursor)
        return result
    if examined is None or session.selected != cursor.folder:
        state = session.examine(cursor.folder)
    if state.uidvalidity != cursor.uidvalidity:
        if cursor.uidvalidity is not None:
            event(log, "sync.uidvalidity_changed", level=logging.WARNING, mailbox=mailbox_id, folder=cursor.folder,
                  old=cursor.uidvalidity, new=state.uidvalidity)
        cursor.uidvalidity, cursor.last_uid = state.uidvalidity, 0
        save(db, mailbox_id, cursor)  # before reading: a crash now means reading again, which is harmless
    # Read for the first time (or renumbered): mail that arrived since the window start only,
    # not years of history; afterwards, every UID above the cursor whatever its date.
    uids = session.search_from(cursor.last_uid + 1, since=since if cursor.last_uid == 0 else None)
    for chunk in fetch_messages(session, uids, max_bytes=limits.max_bytes, chunk_messages=limits.chunk_messages,
                                chunk_bytes=limits.chunk_bytes):
        for message in chunk.messages:
            result.fetched += 1
            try:
                new_id = ingest(db, mailbox_id, folder=cursor.folder, uid=message.uid, raw=message.raw,
                                truncated=message.truncated)
            except Exception as exc:  # noqa: BLE001 (one bad message must not stop the mailbox)
                if _retry_later(db, mailbox_id, cursor, message.uid, exc):
                    return result
                continue
            result.new += new_id is not None
        cursor.last_uid = max(cursor.last_uid, chunk.through_uid)
        cursor.last_error = None
        save(db, mailbox_id, cursor)
        if stopping():
            return result
    if state.uidnext:  # nothing below UIDNEXT is left unread: later mail gets higher UIDs
        cursor.last_uid = max(cursor.last_uid, state.uidnext - 1)
    cursor.last_error = None
    save(db, mailbox_id, cursor)
    return result


def _retry_later(db: Database, mailbox_id: int, cursor: FolderCursor, uid: int, exc: Exception) -> bool:
    """Stop this folder at a message that could not be recorded (True), or skip it for good
    after INGEST_ATTEMPTS tries (False)."""
    cursor.failing_attempts = cursor.failing_attempts + 1 if cursor.failing_uid == uid else 1
    cursor.failing_uid = uid
    error = f"{type(exc).__name__}: {exc}"[:200]
    if cursor.failing_attempts < INGEST_ATTEMPTS:
        event(log, "sync.ingest_failed", level=logging.WARNING, mailbox=mailbox_id, folder=cursor.folder, uid=uid,
              attempt=cursor.failing_attempts, error=error)
        cursor.last_uid = max(cursor.last_uid, uid - 1)  # everything before it is recorded
        record_error(db, mailbox_id, cursor, f"The message with UID {uid} could not be recorded; retrying.")
        return True
    event(log, "sync.message_skipped", level=logging.ERROR, mailbox=mailbox_id, folder=cursor.folder, uid=uid,
          error=error)
    return False
