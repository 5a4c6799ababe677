"""One thread watching the sockets of every session waiting in IDLE.

Thousands of idling mailboxes must not mean thousands of threads: the OS selector (epoll on
Linux) watches them all. The watcher never reads a socket. When one becomes readable it stops
watching it and hands the mailbox back (`on_ready`); a sync worker then reads the answer. Only
this thread touches the selector: other threads queue their changes and wake it through a
socket pair.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from typing import Callable

from ..logs import event

log = logging.getLogger("mailflow.sync")


class IdleWatcher:
    def __init__(self, on_ready: Callable[[object], None]):
        self._on_ready = on_ready
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._changes: list[tuple[int, object | None]] = []  # (fd, data); data None = stop watching
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mailflow-sync-idle", daemon=True)
        self._thread.start()

    def watch(self, fd: int, data: object) -> None:
        """Report `data` to on_ready once fd becomes readable. The caller has checked that no
        answer already waits in its own buffers (select cannot see those)."""
        self._change(fd, data)

    def unwatch(self, fd: int) -> None:
        """Call before the socket is used or closed; queued in order with later watch() calls,
        so a reused descriptor number is never confused with the old one."""
        self._change(fd, None)

    def _change(self, fd: int, data: object | None) -> None:
        with self._lock:
            self._changes.append((fd, data))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already woken) or closed (stopping)

    def watching(self) -> int:
        return len(self._selector.get_map()) - 1

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self.alive:
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._apply_changes()
                ready = self._selector.select(timeout=5.0)
            except Exception as exc:  # noqa: BLE001 (a bug here must not end IDLE for everyone silently)
                event(log, "sync.idle_watcher_failed", level=logging.ERROR, exc_info=exc)
                self._stopping.wait(1.0)
                continue
            for key, _ in ready:
                if key.data is None:
                    self._drain_wake()
                    continue
                self._selector.unregister(key.fd)
                self._hand_back(key.data)

    def _apply_changes(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, []
        watched = self._selector.get_map()
        for fd, data in changes:
            if fd in watched:
                self._selector.unregister(fd)
            if data is None:
                continue
            try:
                self._selector.register(fd, selectors.EVENT_READ, data)
            except (OSError, ValueError):  # closed meanwhile: its worker will find out
                self._hand_back(data)

    def _hand_back(self, data: object) -> None:
        try:
            self._on_ready(data)
        except Exception as exc:  # noqa: BLE001
            event(log, "sync.idle_handback_failed", level=logging.ERROR, exc_info=exc)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
