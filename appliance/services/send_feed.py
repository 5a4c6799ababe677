"""A mailbox worker's database side: claims ahead of its SMTP conversation, records behind it.

The worker asks `next()` for a composed message, reports each outcome, and gives the feed the
moments it would otherwise spend blocked on the server (`while_waiting`, called between
writing MAIL FROM and reading its reply). The feed uses them for the next message's work:

- Messages are claimed in batches (one claim transaction checks each message, see
  claiming.py) and the accepted ones recorded in batches: one transaction records the last
  batch's sends and claims the next. That transaction's cost is mostly fixed (its commit
  encrypts and writes the pages it touched), so a burst claims as deep as it is allowed to.
- A claimed message is composed during the previous message's wait; the round that records
  and claims runs in the wait of the last message of a batch.

Everything runs on the worker's own thread. No second thread: on a machine with few cores
a helper thread only moves the CPU this costs elsewhere and adds GIL hand-overs to every
SMTP reply, while the server's waits are free.

What this must not change:

- Every message is claimed (checked, planned → sending) in a claim transaction before it is
  handed to SMTP, and stays `sending` until its outcome commits. A crash leaves accepted but
  unrecorded messages, and claimed ones never handed out, `sending`: reconcile settles both
  from the Sent folder, exactly as for a single message.
- How far ahead: at most `AHEAD_SECONDS` of sends at the measured rate (and at most
  `MOST_AHEAD` messages), so a pause, a reply or a suppression recorded meanwhile stops at most
  that much already-claimed mail; a slow server gets a shallow queue. Accepted messages wait
  for their record about as long.
- A mailbox with a gap between sends (pacing on) goes one message at a time: claim, send,
  record, and only then the next claim, which sees the new gap.
- On close (the worker is done or stopping), accepted messages are recorded and claimed ones
  never handed to SMTP go back to `planned`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from ..db import Database
from . import sender
from .claiming import Claimed, Policy, paced

AHEAD_SECONDS = 0.1
MOST_AHEAD = 128
FIRST_CLAIM = 4  # until a send has been timed


@dataclass
class Ready:
    """A claimed message, composed just before it is needed."""
    claimed: Claimed
    raw: bytes | None = None
    subject: str = ""
    variant: str = ""
    failed: bool = False  # it could not be composed, and is recorded as failed


class Feed:
    def __init__(self, db: Database, keys, mailbox_id: int, policy: Policy, rng: random.Random):
        self.db, self.keys, self.mailbox_id, self.policy, self.rng = db, keys, mailbox_id, policy, rng
        self._ready: deque[Ready] = deque()
        self._accepted: list[sender.Sent] = []
        self._out = 0  # handed to the worker, outcome not yet reported
        self._exhausted = False
        self._paced = False
        self._send_time = 0.0  # moving average of one SMTP transaction, seconds
        self._error: Exception | None = None  # from work done while waiting; raised at next()

    def next(self) -> Ready | None:
        """The next composed message, or None when nothing more may go now."""
        while True:
            if self._error is not None:
                raise self._error
            if not self._ready and not self._exhausted:
                self._round()
            if not self._ready:
                return None
            item = self._ready[0]
            if item.raw is None and not item.failed:
                self._compose(item)
                if self._error is not None:  # still queued: close() puts it back to planned
                    raise self._error
            self._ready.popleft()
            if not item.failed:
                self._out += 1
                return item

    def while_waiting(self) -> None:
        """The worker has a message on its way and waits for the server: claim the next batch
        if this was the last one ready, and compose the next message. Never raises (an error is
        kept for next())."""
        try:
            if not self._ready and not self._exhausted and self._wanted():
                self._round()
            if self._ready and self._ready[0].raw is None and not self._ready[0].failed:
                self._compose(self._ready[0])
        except Exception as exc:  # a database error or a bug: the worker raises it at next()
            self._error = self._error or exc

    def accepted(self, item: Ready, seconds: float) -> None:
        """The server took it (250); recorded with the next round, or at close()."""
        self._accepted.append(sender.Sent(item.claimed, item.subject, item.variant, _now()))
        self._done(seconds)

    def settled(self, seconds: float = 0.0) -> None:
        """Its outcome was recorded by the worker (refused, retry, uncertain)."""
        self._done(seconds)

    def close(self) -> None:
        """Record what was accepted and put back what never went."""
        sender.record_sent_many(self.db, self._accepted, self.rng)
        self._accepted = []
        leftover, self._ready = list(self._ready), deque()
        sender.release(self.db, [r.claimed for r in leftover if not r.failed])

    def _done(self, seconds: float) -> None:
        self._out -= 1
        if seconds:
            self._send_time = seconds if not self._send_time else 0.8 * self._send_time + 0.2 * seconds

    def _wanted(self) -> int:
        """How many to claim now (0: none)."""
        if self._exhausted:
            return 0
        if self._paced:  # the next claim must see this send's gap
            return 0 if (self._ready or self._out) else 1
        depth = FIRST_CLAIM
        if self._send_time:
            depth = max(2, min(MOST_AHEAD, int(AHEAD_SECONDS / self._send_time)))
        return max(0, depth - len(self._ready))

    def _round(self) -> None:
        """One transaction: record what was accepted, claim what is wanted."""
        wanted = self._wanted()
        accepted, self._accepted = self._accepted, []
        try:
            claimed = sender.record_and_claim(self.db, accepted, self.mailbox_id, self.policy, wanted, self.rng)
        except Exception:
            self._accepted = accepted + self._accepted  # still to record (close() tries again)
            raise
        self._paced = self._paced or bool(claimed and paced(claimed[0].mailbox))
        if wanted:
            self._exhausted = not claimed
        self._ready.extend(Ready(c) for c in claimed)

    def _compose(self, item: Ready) -> None:
        """Compose a claimed message; one that cannot be built is recorded as failed."""
        try:
            composed = sender.compose_or_fail(self.db, self.keys, item.claimed, self.policy, _now())
        except Exception as exc:  # a bug: the worker raises it at next()
            self._error = self._error or exc
            return
        if composed is None:
            item.failed = True
        else:
            item.raw, item.subject, item.variant = composed
            item.claimed.raw = item.raw


def _now() -> datetime:
    return datetime.now(timezone.utc)
