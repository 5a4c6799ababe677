"""Settling messages whose fate is unknown, from the mailbox's Sent folder over IMAP.

A message is `sending` after a crash between the server's 250 and our commit, or `uncertain`
when the connection broke while its body was on the wire. For each, the Sent folder is
searched for its Message-ID (generated and stored before the SMTP transaction):

- found: it was sent; recorded as sent and the lead's sequence moves on;
- provably absent: the mailbox's server files every submitted message in Sent itself (the
  Gmail/Microsoft behaviour; we do not append copies there), so absence means it never went:
  planned again;
- otherwise (we append copies ourselves, or there is no Sent folder): `uncertain`, shown to
  a person, never resent blindly.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from imapclient.exceptions import IMAPClientError

from ..db import Database, campaigns_repo, mailboxes_repo, messages_repo
from ..db.timefmt import from_iso, to_iso
from ..logs import event
from ..mail.imap import ImapSession, validate_folder_name
from ..mail.tls import TransportError
from . import mailboxes, webhooks
from .audit import Actor

log = logging.getLogger("mailflow.reconcile")


def _found_in_sent(session: ImapSession, folder: str, message_id: str) -> bool:
    session.client.select_folder(validate_folder_name(folder), readonly=True)
    return bool(session.client.search(["HEADER", "Message-ID", message_id]))


def reconcile_mailbox(db: Database, keys, mailbox_id: int, messages: list) -> dict[str, int]:
    """Settle the given `sending`/`uncertain` messages of one mailbox; returns counts by outcome.
    IMAP trouble leaves them as they are, for the next attempt."""
    outcome = {"sent": 0, "requeued": 0, "uncertain": 0}
    mailbox = mailboxes_repo.by_id(db.connection(), mailbox_id) if mailbox_id is not None else None
    if mailbox is None:  # the mailbox was deleted: nothing can be proven
        for m in messages:
            outcome[settle(db, m, found=False, server_files_sent=False)] += 1
        return outcome
    creds = mailboxes.credentials(db, keys, mailbox_id, Actor.system("scheduler"), "reconcile")
    try:
        with ImapSession(creds.imap, creds.username, creds.password) as session:
            folder = mailbox["sent_folder"] or session.folders().sent
            for m in messages:
                found = bool(folder) and _found_in_sent(session, folder, m["message_id"])
                outcome[settle(db, m, found=found, server_files_sent=bool(folder) and not mailbox["save_sent_copy"])] += 1
    except (TransportError, IMAPClientError, OSError, ValueError) as exc:
        event(log, "reconcile.failed", level=logging.WARNING, mailbox=mailbox_id, error=str(exc)[:200])
    return outcome


def settle(db: Database, m, *, found: bool, server_files_sent: bool) -> str:
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        if found:
            sent_at = m["claimed_at"] or to_iso(now)
            if messages_repo.set_status(conn, m["id"], "sent", expect=m["status"], sent_at=sent_at):
                delays = messages_repo.step_delays(conn, m["campaign_id"])
                following = m["step"] + 1
                due = (to_iso(from_iso(sent_at) + timedelta(minutes=delays[following])) if following < len(delays) else None)
                messages_repo.advance_enrollment(conn, m["enrollment_id"], following, due)
                messages_repo.mark_contacted(conn, m["lead_id"], to_iso(now))
                messages_repo.add_event(conn, "sent", campaign_id=m["campaign_id"], lead_id=m["lead_id"],
                                        message_id=m["id"], step=m["step"], variant=m["variant"],
                                        data={"reconciled": True}, now=to_iso(now))
                if webhooks.wanted(conn, "email.sent"):  # as a send recorded at once would have
                    webhooks.emit(conn, "email.sent", webhooks.email_sent_data(
                        lead=campaigns_repo.leads_by_ids(conn, [m["lead_id"]])[0],
                        campaign=campaigns_repo.by_id(conn, m["campaign_id"]),
                        mailbox=mailboxes_repo.by_id(conn, m["mailbox_id"]),
                        message={**dict(m), "status": "sent", "sent_at": sent_at}))
            return "sent"
        if server_files_sent:
            messages_repo.set_status(conn, m["id"], "planned", expect=m["status"], planned_at=to_iso(now),
                                     last_error="not in the Sent folder after an interrupted send: sending again")
            return "requeued"
        messages_repo.set_status(conn, m["id"], "uncertain", expect=m["status"],
                                 last_error="interrupted while sending; this mailbox's server does not file sent "
                                            "mail, so whether it went cannot be proven: check and decide")
        return "uncertain"


class Orphans:
    """The messages an earlier process left `sending`. Taken once at start-up, before this
    process sends anything, so every `sending` row at that moment is an orphan (no clock
    comparison involved); settled again on each run until none is left (IMAP may be down)."""

    def __init__(self, db: Database):
        self.ids = {m["id"] for m in messages_repo.in_status(db.connection(), "sending")}

    def settle(self, db: Database, keys) -> dict[str, int]:
        totals = {"sent": 0, "requeued": 0, "uncertain": 0}
        if not self.ids:
            return totals
        rows = [m for m in messages_repo.in_status(db.connection(), "sending") if m["id"] in self.ids]
        by_mailbox: dict[int, list] = {}
        for m in rows:
            by_mailbox.setdefault(m["mailbox_id"], []).append(m)
        for mailbox_id, messages in by_mailbox.items():
            for key, value in reconcile_mailbox(db, keys, mailbox_id, messages).items():
                totals[key] += value
        still = {m["id"] for m in messages_repo.in_status(db.connection(), "sending")}
        self.ids &= still
        event(log, "reconcile.done", remaining=len(self.ids), **totals)
        return totals
