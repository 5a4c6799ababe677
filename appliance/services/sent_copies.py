"""Copies of sent messages for providers that do not file SMTP-submitted mail in Sent
themselves (Gmail and Microsoft do; most other hosts do not): APPENDed over IMAP, flagged
\\Seen, on one IMAP session per worker run (opened at the first copy), not one login per
message. A failed copy drops the session and the next one starts afresh; after GIVE_UP
failures in a row (a folder that refuses APPEND, say) the run stops trying."""

from __future__ import annotations

import logging

from ..logs import event
from ..mail.imap import ImapSession, validate_folder_name
from . import mailboxes
from .audit import Actor

log = logging.getLogger("mailflow.engine")
GIVE_UP = 2


class SentCopies:
    def __init__(self, app, mailbox_id: int):
        self.app, self.mailbox_id = app, mailbox_id
        self._session: ImapSession | None = None
        self._folder: str | None = None
        self._failures = 0

    def append(self, claimed) -> None:
        """Append the message as it went out. The message is sent either way: a missing copy is
        logged, not fatal, and the next copy starts a fresh session."""
        if self._failures >= GIVE_UP:
            return
        try:
            if self._session is None:
                creds = mailboxes.credentials(self.app.db, self.app.keys, self.mailbox_id, Actor.system("scheduler"),
                                              "send")
                self._session = ImapSession(creds.imap, creds.username, creds.password).open()
                self._folder = claimed.mailbox["sent_folder"] or self._session.folders().sent
            if self._folder:
                self._session.client.append(validate_folder_name(self._folder), claimed.raw, flags=[b"\\Seen"])
            self._failures = 0
        except Exception as exc:
            self._failures += 1
            event(log, "engine.sent_copy_failed", level=logging.WARNING, message=claimed.message["id"],
                  error=f"{type(exc).__name__}: {exc}"[:200], giving_up=self._failures >= GIVE_UP)
            self.close()

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # never in the way of the worker's own clean-up
                event(log, "engine.sent_copy_failed", level=logging.WARNING, error=f"{type(exc).__name__}"[:200])
