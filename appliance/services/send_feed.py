"""A mailbox worker's database side: claims ahead of its SMTP conversation, records behind it.

The worker asks `next()` for a composed message and reports each outcome. Behind that:

- Messages are claimed in small batches (one claim transaction checks each message, see
  claiming.py) and the accepted ones recorded in batches; one transaction records the last
  batch's sends and claims the next.
- A short run (a paced mailbox, a handful due) or a slow server: that happens on the worker's
  own thread, between sends. A burst to a quick server (unpaced, claims coming back full, a
  send under `FAST_SEND`) gets a helper thread that claims and composes the next messages while
  the worker talks SMTP, and records behind it, so the database work overlaps the server's
  round trips (SQLite runs without the GIL).

What this must not change:

- Every message is claimed (checked, planned → sending) in a claim transaction before it is
  handed to SMTP, and stays `sending` until its outcome commits. A crash leaves accepted but
  unrecorded messages, and claimed ones never handed out, `sending`: reconcile settles both
  from the Sent folder, exactly as for a single message.
- How far ahead: at most `AHEAD_SECONDS` of sends at the measured rate (and at most
  `MOST_AHEAD` messages), so a pause, a reply or a suppression recorded meanwhile stops at most
  that much already-claimed mail; a slow server gets a shallow queue.
- A mailbox with a gap between sends (pacing on) goes one message at a time: claim, send,
  record, and only then the next claim, which sees the new gap.
- On close (the worker is done or stopping), accepted messages are recorded and claimed ones
  never handed to SMTP go back to `planned`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from ..db import Database
from . import sender
from .claiming import Claimed, Policy, paced

AHEAD_SECONDS = 0.1
MOST_AHEAD = 32
FIRST_CLAIM = 4  # until a send has been timed
RECORD_EVERY = 0.05  # seconds an accepted message may wait for its record, at most (plus one commit)
FAST_SEND = 0.005  # a helper thread pays off only where the database work is a fair part of a send


@dataclass
class Ready:
    claimed: Claimed
    raw: bytes
    subject: str
    variant: str


class Feed:
    def __init__(self, db: Database, keys, mailbox_id: int, policy: Policy, rng: random.Random):
        self.db, self.keys, self.mailbox_id, self.policy, self.rng = db, keys, mailbox_id, policy, rng
        self._cond = threading.Condition()
        self._ready: deque[Ready] = deque()
        self._accepted: list[sender.Sent] = []
        self._oldest = 0.0  # monotonic time of the oldest unrecorded acceptance
        self._out = 0  # handed to the worker, outcome not yet reported
        self._exhausted = False
        self._closing = False
        self._paced = False
        self._send_time = 0.0  # moving average of one SMTP transaction, seconds
        self._error: BaseException | None = None
        self._helper: threading.Thread | None = None

    # -- the worker's side ----------------------------------------------------------------

    def next(self) -> Ready | None:
        """The next composed message, or None when nothing more may go now."""
        if self._helper is None:
            if not self._ready and not self._exhausted:
                wanted = self._wanted()
                claimed = self._round(wanted)
                if len(claimed) == wanted and not self._paced and 0 < self._send_time < FAST_SEND:
                    # a burst to a quick server: from now on the database work runs beside the SMTP
                    self._helper = threading.Thread(target=self._run, name=f"mailflow-feed-{self.mailbox_id}",
                                                    daemon=True)
                    self._helper.start()
            if not self._ready:
                return None
            self._out += 1
            return self._ready.popleft()
        with self._cond:
            while not self._ready and not self._exhausted and self._error is None:
                self._nudge()
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if not self._ready:
                return None
            self._out += 1
            item = self._ready.popleft()
            self._nudge()
            return item

    def accepted(self, item: Ready, seconds: float) -> None:
        """The server took it (250); recorded soon, in a batch."""
        with self._cond:
            if not self._accepted:
                self._oldest = time.monotonic()
            self._accepted.append(sender.Sent(item.claimed, item.subject, item.variant, _now()))
            self._done(seconds)

    def settled(self, seconds: float = 0.0) -> None:
        """Its outcome was recorded by the worker (refused, retry, uncertain)."""
        with self._cond:
            self._done(seconds)

    def close(self) -> None:
        """Record what was accepted, put back what never went, stop the helper."""
        if self._helper is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._helper.join()
        sender.record_sent_many(self.db, self._accepted, self.rng)
        self._accepted = []
        leftover, self._ready = list(self._ready), deque()
        sender.release(self.db, [r.claimed for r in leftover])

    def _done(self, seconds: float) -> None:
        self._out -= 1
        if seconds:
            self._send_time = seconds if not self._send_time else 0.8 * self._send_time + 0.2 * seconds
        self._nudge()

    def _nudge(self) -> None:
        """Wake the helper only when it has something to do: a wake-up per message would cost
        the SMTP thread a GIL hand-over each time. Caller holds the lock."""
        if self._helper is not None and self._wanted():
            self._cond.notify_all()

    # -- claiming ahead and recording behind --------------------------------------------------

    def _wanted(self) -> int:
        """How many to claim now (0: none). Caller holds the lock or runs inline."""
        if self._exhausted or self._closing:
            return 0
        if self._paced:  # the next claim must see this send's gap
            return 0 if (self._ready or self._out) else 1
        depth = FIRST_CLAIM
        if self._send_time:
            depth = max(2, min(MOST_AHEAD, int(AHEAD_SECONDS / self._send_time)))
        return 0 if len(self._ready) > depth // 2 else depth - len(self._ready)

    def _round(self, wanted: int) -> list[Claimed]:
        """One database round: record what was accepted, claim `wanted` more and compose them."""
        with self._cond:
            accepted, self._accepted = self._accepted, []
        claimed = sender.record_and_claim(self.db, accepted, self.mailbox_id, self.policy, wanted, self.rng)
        ready = []
        for c in claimed:
            composed = sender.compose_or_fail(self.db, self.keys, c, self.policy, _now())
            if composed is not None:
                c.raw = composed[0]
                ready.append(Ready(c, *composed))
        with self._cond:
            self._paced = self._paced or bool(claimed and paced(claimed[0].mailbox))
            if wanted:
                self._exhausted = not claimed
            self._ready.extend(ready)
            self._cond.notify_all()
        return claimed

    def _run(self) -> None:
        """The helper thread: top the queue up when it runs low, record at least every
        RECORD_EVERY seconds, and leave the final record to close()."""
        try:
            while True:
                with self._cond:
                    while True:
                        wanted = self._wanted()
                        overdue = self._accepted and time.monotonic() - self._oldest >= RECORD_EVERY
                        if wanted or overdue or self._closing:
                            break
                        self._cond.wait(RECORD_EVERY if self._accepted else None)
                    if self._closing:
                        return
                self._round(wanted)
        except BaseException as exc:  # the worker re-raises it; claimed messages stay reconcilable
            with self._cond:
                self._error = exc
                self._exhausted = True
                self._cond.notify_all()
        finally:
            self.db.close_thread_connection()


def _now() -> datetime:
    return datetime.now(timezone.utc)
