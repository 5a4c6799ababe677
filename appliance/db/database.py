"""The SQLCipher database: one encrypted file, a connection per thread.

SQLCipher 4 (bundled by the sqlcipher3 wheel) is keyed with a raw 256-bit key
(`x'...'`), which skips its per-connection PBKDF2: opening a connection costs
microseconds, not the ~100 ms of 256,000 PBKDF2 rounds.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlcipher3

from ..errors import ConfigError

BUSY_TIMEOUT_MS = 5000
Row = sqlcipher3.Row
Connection = sqlcipher3.Connection
IntegrityError = sqlcipher3.IntegrityError
DatabaseError = sqlcipher3.DatabaseError


class DatabaseKeyError(ConfigError):
    """The key does not open the file (wrong key, or not a MailFlow database)."""


class Database:
    """Opens connections on demand, one per thread; `transaction()` for writes."""

    def __init__(self, path: str | Path, key: bytes, *, create: bool = False):
        if len(key) != 32:
            raise ValueError("database key must be 32 bytes")
        self.path = Path(path)
        self._key_pragma = f"PRAGMA key = \"x'{key.hex()}'\""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, Connection] = {}
        self._closed = False
        if not self.path.exists():
            if not create:
                raise ConfigError(f"no database at {self.path}; run `mailflow migrate` to create it")
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Open (and verify) one connection now so a wrong key fails at start-up, not later.
        self.connection(create=create)

    def connection(self, *, create: bool = False) -> Connection:
        if self._closed:
            raise RuntimeError("database is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open(create)
            self._local.conn = conn
            with self._lock:
                self._prune_dead_threads()
                self._connections[threading.current_thread()] = conn
        return conn

    def _prune_dead_threads(self) -> None:
        """Close connections whose thread has ended (short-lived worker pools), so their
        number stays bounded by the threads alive now. Caller holds the lock."""
        for thread in [t for t in self._connections if not t.is_alive()]:
            self._connections.pop(thread).close()

    def _open(self, create: bool) -> Connection:
        # mode=rw never creates a file: a wrong path or key can never leave an empty database behind.
        mode = "rwc" if create else "rw"
        conn = sqlcipher3.connect(f"file:{self.path}?mode={mode}", uri=True, isolation_level=None,
                                  # thread-local use is guaranteed by connection(); turning the
                                  # check off lets close() run from the main thread at shutdown.
                                  check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = Row
        # SQLCipher logs every failed page HMAC to stderr; a wrong key is reported once, below.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(self._key_pragma)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except DatabaseError:
            conn.close()
            raise DatabaseKeyError(
                f"database key does not match {self.path} (wrong master key, or not a MailFlow database)"
            ) from None
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # see transaction(durable=...)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")  # temp tables never reach disk unencrypted
        return conn

    @contextmanager
    def transaction(self, *, durable: bool | None = None) -> Iterator[Connection]:
        """A short write transaction (BEGIN IMMEDIATE: take the write lock up front, so two
        writers queue on busy_timeout instead of failing on lock upgrade). Nested calls join
        the outer transaction, on its terms, so a service can record its audit row in the
        same commit.

        Durability. By default a commit is on disk before it returns (WAL synced,
        synchronous=FULL): a power cut or host crash cannot undo what someone was told is
        done (a suppression, a pause, a revoked key, a changed password). `durable=False` is
        for the machine's own high-volume bookkeeping that is redone or reconciled after a
        crash (the record of a send, planning, inbound mail and sync cursors, webhook
        attempts): it survives the process being killed, not a power cut, and does not wait
        for the disk. `durable=True` insists, also when nested: a claim (SMTP follows) that
        would join a lighter transaction raises instead."""
        conn = self.connection()
        if conn.in_transaction:
            if durable and not getattr(self._local, "durable", True):
                raise RuntimeError("a durable transaction cannot join one that is not")
            yield conn
            return
        light = durable is False
        if light:  # SQLite takes the safety level only outside a transaction
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.durable = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # also when COMMIT itself fails (disk full, an I/O error, a deferred constraint):
                # SQLite then keeps the transaction open, and every later transaction on this
                # thread would join it and never commit
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if light:
                self._local.durable = True
                conn.execute("PRAGMA synchronous = FULL")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlcipher3.Cursor:
        return self.connection().execute(sql, params)

    def ping(self) -> None:
        """A round trip through SQLCipher (raises DatabaseError when the file is unusable)."""
        self.connection().execute("SELECT 1").fetchone()

    def checkpoint(self) -> None:
        """Fold the WAL back into the main file; SQLite's auto-checkpoint is skipped while
        readers hold old snapshots, so under steady load the WAL would otherwise keep growing."""
        self.connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def close_thread_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
            conn.close()

    def close(self) -> None:
        """Close every thread's connection. Call once the worker threads are drained; the
        last close checkpoints the WAL into the main file."""
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()
