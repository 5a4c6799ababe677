"""The mailbox sync: reads every active mailbox's INBOX and junk folder over IMAP and hands each
new message to inbound.ingest (classification and its effects: a reply stops the sequence).

- Sessions stay open between cycles. A worker pool of `threads` does the reading, so thousands
  of mailboxes never mean thousands of threads; sessions waiting in IDLE are watched by one
  selector thread (sync_idle).
- Each mailbox is read fully every `interval` seconds (STATUS first: a quiet folder costs one
  round trip). Where the server offers IDLE, INBOX is also read as soon as the server announces
  new mail.
- A dropped connection, also in the middle of a fetch, loses nothing (sync_folder) and is
  reconnected with exponential backoff and jitter. A failed sign-in is recorded on the mailbox
  (three in a row pause it). A mailbox that is paused, deleted or in error loses its session.
- `stop()` finishes within its timeout: idle sessions are dropped at once, busy ones after the
  chunk in hand (or cut, if they overrun), and nothing is lost either way.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ..db import Database, sync_repo
from ..logs import event
from ..mail.tls import TransportError
from .errors import NotFound
from .inbound import ingest as inbound_ingest
from .sync_folder import FolderResult, Ingest, Limits
from .sync_idle import IdleWatcher
from .sync_mailbox import RENEW_SECONDS, Backoff, MailboxSync, session_key

log = logging.getLogger("mailflow.sync")


class SyncEngine:
    def __init__(self, db: Database, keys, *, threads: int = 8, interval: float = 60, idle: bool = True,
                 ingest: Ingest | None = None, limits: Limits = Limits(), backoff: Backoff = Backoff()):
        self.db, self.keys = db, keys
        self.interval = min(interval, RENEW_SECONDS)
        self.idle = idle
        self.limits, self.backoff = limits, backoff
        self._ingest = ingest or inbound_ingest
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailflow-sync")
        self._watcher = IdleWatcher(self._on_idle_event) if idle else None
        self._states: dict[int, MailboxSync] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._rng = random.Random()

    @property
    def state(self) -> str:
        if self._stopping.is_set():
            return "stopping" if any(s.busy for s in list(self._states.values())) else "stopped"
        if not self._started:
            return "not_started"
        return "running" if self._watcher is None or self._watcher.alive else "failed"

    # -- dispatch -------------------------------------------------------------------------------

    def tick(self, *, force: bool = False) -> list[Future]:
        """Follow the active mailboxes (new ones get a state, gone or changed ones lose their
        session), then start a cycle for each mailbox that is due; `force`: every idle one now."""
        if self._stopping.is_set():
            return []
        if not self._started:
            self._started = True
            if self._watcher is not None:
                self._watcher.start()
        rows = {row["id"]: row for row in sync_repo.active_mailboxes(self.db.connection())}
        now = time.monotonic()
        started = []
        with self._lock:
            for mailbox_id, state in list(self._states.items()):
                row = rows.get(mailbox_id)
                if row is None or session_key(row) != state.key:
                    state.removed = True
                    if not state.busy:
                        started.append(self._submit(state, "drop"))
            for mailbox_id, row in rows.items():
                if mailbox_id not in self._states:
                    self._states[mailbox_id] = MailboxSync(row)
            for state in self._states.values():
                if not state.busy and not state.removed and (force or now >= max(state.next_due, state.retry_at)):
                    started.append(self._submit(state, "poll"))
        return [f for f in started if f is not None]

    def run_cycle(self, timeout: float | None = None) -> FolderResult:
        """Read every active mailbox now (all folders) and wait; for `mailflow` tools, tests and
        benchmarks. Returns what was fetched and how much of it was new."""
        total = FolderResult()
        futures = self.tick(force=True)
        wait(futures, timeout=timeout)
        for future in futures:
            if future.done() and not future.cancelled() and future.result() is not None:
                total.fetched += future.result().fetched
                total.new += future.result().new
        return total

    def _submit(self, state: MailboxSync, reason: str) -> Future | None:
        """Caller holds the lock."""
        if self._stopping.is_set():
            return None
        state.busy = True
        self._take_back(state)
        return self._pool.submit(self._work, state, reason)

    def _take_back(self, state: MailboxSync) -> None:
        """Stop watching a session before a worker uses or closes it. Caller holds the lock."""
        if state.idle_token is not None:
            state.idle_token = None
            self._watcher.unwatch(state.idle_fd)

    def _on_idle_event(self, data) -> None:
        mailbox_id, token = data
        with self._lock:
            state = self._states.get(mailbox_id)
            if state is None or state.idle_token is not token:
                return  # stale: the session was taken back meanwhile
            state.idle_token = None
            if state.busy:
                state.dirty = True
            else:
                self._submit(state, "idle")

    # -- the worker -----------------------------------------------------------------------------

    def _work(self, state: MailboxSync, reason: str) -> FolderResult:
        total = FolderResult()
        try:
            while not self._stopping.is_set():
                if reason == "drop" or state.removed:
                    self._drop(state)
                    return total
                result = self._cycle(state, reason)
                total.fetched += result.fetched
                total.new += result.new
                with self._lock:
                    if not (state.dirty and state.session is not None):
                        break
                    state.dirty, reason = False, "idle"
                    self._take_back(state)
        except Exception as exc:  # a bug must not take the sync down; the cursor holds what was recorded
            event(log, "sync.worker_failed", level=logging.ERROR, mailbox=state.mailbox_id, exc_info=exc)
            with self._lock:
                self._take_back(state)
            state.abort()
            self._back_off(state)
        finally:
            with self._lock:
                state.busy = False
        return total

    def _cycle(self, state: MailboxSync, reason: str) -> FolderResult:
        if state.session is None:
            if time.monotonic() < state.retry_at:
                return FolderResult()
            try:
                state.connect(self.db, self.keys)
            except TransportError as exc:
                self._failed(state, exc, connecting=True)
                return FolderResult()
            except NotFound:  # deleted meanwhile
                state.removed = True
                return FolderResult()
            reason = "poll"  # a new session reads every folder
        try:
            result = state.run(self.db, ingest=self._ingest, limits=self.limits, stopping=self._stopping.is_set,
                               inbox_only=reason == "idle", idle=self.idle)
        except TransportError as exc:
            self._failed(state, exc, connecting=False)
            return FolderResult()
        state.failures = 0
        if reason == "poll":
            state.next_due = time.monotonic() + self.interval
        if state.session.idling:
            self._watch(state)
        return result

    def _watch(self, state: MailboxSync) -> None:
        buffered = state.session.has_buffered_input()  # an answer came with the IDLE continuation
        token = object()
        with self._lock:
            if buffered:
                state.dirty = True
                return
            state.idle_token, state.idle_fd = token, state.session.fileno()
            self._watcher.watch(state.idle_fd, (state.mailbox_id, token))

    def _failed(self, state: MailboxSync, exc: TransportError, *, connecting: bool) -> None:
        state.abort()
        delay = self._back_off(state)
        event(log, "sync.connection_failed", level=logging.WARNING, mailbox=state.mailbox_id, code=exc.code,
              error=exc.message, connecting=connecting, failures=state.failures, retry_in=round(delay, 1))
        try:
            state.record_failure(self.db, exc.code, exc.message, connecting=connecting)
        except NotFound:
            state.removed = True

    def _back_off(self, state: MailboxSync) -> float:
        state.next_due = 0.0  # due again as soon as the backoff allows: a new session reads every folder
        state.failures += 1
        delay = self.backoff.delay(state.failures, self._rng)
        state.retry_at = time.monotonic() + delay
        return delay

    def _drop(self, state: MailboxSync) -> None:
        state.close()
        with self._lock:
            if self._states.get(state.mailbox_id) is state:
                del self._states[state.mailbox_id]
        event(log, "sync.session_dropped", level=logging.DEBUG, mailbox=state.mailbox_id)

    # -- looking and stopping -------------------------------------------------------------------

    def mailbox(self, mailbox_id: int) -> MailboxSync | None:
        with self._lock:
            return self._states.get(mailbox_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = list(self._states.values())
        return {"mailboxes": len(states), "sessions": sum(s.session is not None for s in states),
                "idling": sum(s.idle_token is not None for s in states),
                "backing_off": sum(s.session is None and s.failures > 0 for s in states)}

    def stop(self, timeout: float) -> bool:
        """Within `timeout`: no new work, idle sessions dropped, busy workers finish the chunk
        in hand (their sockets are cut if they overrun half the time), then every session is closed."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.stop(min(2.0, timeout / 4))
        with self._lock:
            states = list(self._states.values())
        for state in states:
            if not state.busy:
                state.abort()
        waiter = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
        waiter.start()
        waiter.join(max(0.0, (deadline - time.monotonic()) / 2))
        if waiter.is_alive():
            for state in states:
                session = state.session
                if state.busy and session is not None:
                    session.interrupt()
            waiter.join(max(0.0, deadline - time.monotonic()))
        for state in states:
            if not state.busy:
                state.abort()
        return not waiter.is_alive()
