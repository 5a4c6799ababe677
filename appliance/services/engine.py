"""The sending engine: one worker per mailbox with due messages, on a bounded pool.

A mailbox has at most one SMTP conversation at a time (its worker), and the worker reuses
its connection for consecutive messages while they keep coming. Its database side (claims in
batches ahead, records in batches behind) is send_feed.Feed. `stop()` lets workers finish the
message they are sending, then returns; what they had claimed beyond it goes back to planned.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ..db import messages_repo
from ..db.timefmt import to_iso
from ..logs import event
from ..mail.smtp import SmtpAmbiguous, SmtpRejected, SmtpSession
from ..mail.tls import TransportError
from . import mailboxes, reconcile, sender
from .audit import Actor
from .send_feed import Feed
from .sent_copies import SentCopies

log = logging.getLogger("mailflow.engine")


class SendingEngine:
    def __init__(self, app, *, threads: int, policy: sender.Policy):
        self.app = app
        self.policy = policy
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailflow-send")
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random()

    def tick(self) -> int:
        """Start a worker for every mailbox that has a due message and no worker yet."""
        if self._stopping.is_set():
            return 0
        due = messages_repo.mailboxes_with_due(self.app.db.connection(), to_iso(datetime.now(timezone.utc)))
        started = 0
        for mailbox_id in due:
            with self._lock:
                if mailbox_id in self._busy:
                    continue
                self._busy.add(mailbox_id)
            self._pool.submit(self._work, mailbox_id)
            started += 1
        return started

    def _work(self, mailbox_id: int) -> None:
        db = self.app.db
        session: SmtpSession | None = None
        feed = Feed(db, self.app.keys, mailbox_id, self.policy, self._rng)
        copies: SentCopies | None = None
        try:
            while not self._stopping.is_set():
                item = feed.next()
                if item is None:
                    break
                claimed = item.claimed
                if session is None:
                    session = self._connect(claimed)
                    if session is None:
                        feed.settled()
                        break
                started = time.monotonic()
                try:
                    accepted = sender.transmit(db, claimed, session, item.raw, datetime.now(timezone.utc),
                                               while_waiting=feed.while_waiting)
                except SmtpAmbiguous as exc:
                    feed.settled()
                    self._settle_ambiguous(claimed, exc.message)
                    session.close()
                    session = None
                    break
                except (SmtpRejected, TransportError, OSError):
                    feed.settled()  # transmit planned it again with a backoff
                    session.close()
                    session = None
                    break
                if not accepted:  # refused for good, recorded as failed
                    feed.settled(time.monotonic() - started)
                    continue
                feed.accepted(item, time.monotonic() - started)
                event(log, "message.sent", message=claimed.message["id"], mailbox=mailbox_id)
                if claimed.mailbox["save_sent_copy"]:
                    copies = copies or SentCopies(self.app, mailbox_id)
                    copies.append(claimed)
        except Exception as exc:  # a bug must not take the engine down; the message stays reconcilable
            event(log, "engine.worker_failed", level=logging.ERROR, mailbox=mailbox_id, exc_info=exc)
        finally:
            try:
                feed.close()  # records what went, puts back what was claimed and never went
            except Exception as exc:  # what is left `sending` is settled by reconcile
                event(log, "engine.worker_failed", level=logging.ERROR, mailbox=mailbox_id, exc_info=exc)
            finally:
                if session is not None:
                    session.close()
                if copies is not None:
                    copies.close()
                with self._lock:
                    self._busy.discard(mailbox_id)

    def _connect(self, claimed) -> SmtpSession | None:
        mailbox_id = claimed.mailbox["id"]
        now = datetime.now(timezone.utc)
        try:
            creds = mailboxes.credentials(self.app.db, self.app.keys, mailbox_id, Actor.system("scheduler"), "send")
            return SmtpSession(creds.smtp, creds.username, creds.password, creds.helo).open()
        except TransportError as exc:
            sender.record_retry(self.app.db, claimed, exc.message, now)  # never sent: safe to plan again
            mailboxes.record_transport_failure(self.app.db, mailbox_id, exc.code, exc.message)
            return None

    def _settle_ambiguous(self, claimed, error: str) -> None:
        db = self.app.db
        with db.transaction() as conn:
            messages_repo.set_status(conn, claimed.message["id"], "uncertain", expect="sending", last_error=error)
        row = messages_repo.by_id(db.connection(), claimed.message["id"])
        reconcile.reconcile_mailbox(db, self.app.keys, claimed.mailbox["id"], [row])

    def stop(self, timeout: float) -> bool:
        """Workers finish the message in hand (bounded by `timeout`), then stop."""
        self._stopping.set()
        waiter = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
        waiter.start()
        waiter.join(timeout)
        return not waiter.is_alive()
