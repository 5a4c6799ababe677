"""The SQLCipher database: unreadable without the key, clear errors, one connection per thread."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from appliance.db import Database, DatabaseKeyError, settings_repo
from appliance.errors import EX_CONFIG
from appliance.keys import generate_key_file
from appliance.runtime import open_appliance

from .support.appliance import serve_env

CANARY = "canary-7f3a9c1e-do-not-leak@example.test"


def file_bytes(db_path) -> bytes:
    """The database and its WAL, as an attacker with a copy of the disk would see them."""
    data = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def test_canary_never_appears_in_the_file(appliance):
    with appliance.db.transaction() as conn:
        settings_repo.put(conn, "canary", CANARY)
    assert settings_repo.get(appliance.db.connection(), "canary") == CANARY
    raw = file_bytes(appliance.config.database_path)
    assert len(raw) > 4096
    assert CANARY.encode() not in raw and b"settings" not in raw and b"SQLite format 3" not in raw
    appliance.db.checkpoint()
    assert CANARY.encode() not in file_bytes(appliance.config.database_path)


def test_file_is_unreadable_as_plain_sqlite(appliance):
    path = appliance.config.database_path
    appliance.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        conn.execute("SELECT * FROM sqlite_master").fetchall()
    conn.close()


def test_wrong_key_is_one_clear_error_and_changes_nothing(appliance):
    path = appliance.config.database_path
    appliance.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseKeyError, match="database key does not match"):
        Database(path, os.urandom(32), create=True)
    assert path.read_bytes() == before


def test_serve_with_the_wrong_key_exits_78_and_never_creates_a_database(tmp_path):
    env = serve_env(tmp_path)
    assert subprocess.run([sys.executable, "-m", "appliance.cli", "migrate"], env=env,
                          capture_output=True).returncode == 0
    db_path = tmp_path / "data" / "mailflow.db"
    before = db_path.read_bytes()
    other = generate_key_file(tmp_path / "keys" / "other.key")
    env["MAILFLOW_KEY_FILE"] = str(other)
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EX_CONFIG
    assert result.stderr.strip().splitlines() == [
        f"mailflow: database key does not match {db_path} (wrong master key, or not a MailFlow database)"]
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["mailflow.db"]


def test_opening_a_missing_database_without_create_never_creates_one(tmp_path):
    with pytest.raises(Exception, match="no database at"):
        Database(tmp_path / "missing.db", os.urandom(32))
    assert not (tmp_path / "missing.db").exists()


def test_data_directory_is_private(appliance):
    assert oct(appliance.config.data_dir.stat().st_mode & 0o777) == oct(0o700)


def test_wal_mode_and_foreign_keys(appliance):
    conn = appliance.db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA cipher_version").fetchone()[0].startswith("4.")


def test_one_connection_per_thread(appliance):
    seen = {}

    def grab(name):
        seen[name] = appliance.db.connection()
        assert appliance.db.connection() is seen[name]

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen.values()}) == 4
    assert appliance.db.connection() not in seen.values()


def test_transaction_rolls_back_on_error_and_nested_calls_join(appliance):
    db = appliance.db
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            settings_repo.put(conn, "a", "1")
            with db.transaction() as inner:
                assert inner is conn
                settings_repo.put(inner, "b", "2")
            raise RuntimeError("boom")
    assert settings_repo.get(db.connection(), "a") is None
    assert settings_repo.get(db.connection(), "b") is None


def test_a_failed_commit_rolls_back_and_leaves_the_connection_usable(appliance):
    """COMMIT itself can fail (disk full, I/O error, a deferred constraint); SQLite then keeps
    the transaction open. It must be rolled back, or every later write on this thread would
    join it and never be committed."""
    db = appliance.db
    with pytest.raises(sqlite_integrity_error()):
        with db.transaction() as conn:
            settings_repo.put(conn, "with-the-failed-commit", "1")
            conn.execute("PRAGMA defer_foreign_keys = ON")  # the violation is found at COMMIT
            conn.execute("INSERT INTO lead_tags (lead_id, tag) VALUES (999999, 'orphan')")
    assert not db.connection().in_transaction
    assert settings_repo.get(db.connection(), "with-the-failed-commit") is None
    with db.transaction() as conn:
        settings_repo.put(conn, "after", "1")
    seen: list = []
    other = threading.Thread(target=lambda: seen.append(settings_repo.get(db.connection(), "after")))
    other.start()
    other.join()
    assert seen == ["1"]  # committed for real: another connection reads it


def sqlite_integrity_error():
    import sqlcipher3
    return sqlcipher3.dbapi2.IntegrityError


def sync_level(db) -> int:
    """SQLite's synchronous setting on this thread's connection: 1 NORMAL, 2 FULL."""
    return db.connection().execute("PRAGMA synchronous").fetchone()[0]


def test_commits_wait_for_the_disk_unless_they_are_bookkeeping_that_is_redone(appliance):
    db = appliance.db
    assert sync_level(db) == 2  # FULL: a commit is on disk before it returns (a power cut cannot undo it)
    with db.transaction() as conn:
        assert sync_level(db) == 2
        settings_repo.put(conn, "told", "1")
        with db.transaction(durable=False) as inner:  # a lighter call joins on the outer's terms
            assert inner is conn and sync_level(db) == 2
    with db.transaction(durable=False) as conn:  # the machine's own bookkeeping: survives a killed process
        assert sync_level(db) == 1
        settings_repo.put(conn, "light", "1")
        with pytest.raises(RuntimeError, match="durable"):  # a claim must never hide in a light commit
            with db.transaction(durable=True):
                pass
    assert sync_level(db) == 2
    assert settings_repo.get(db.connection(), "told") == "1" and settings_repo.get(db.connection(), "light") == "1"
    with pytest.raises(KeyError):
        with db.transaction(durable=False) as conn:
            settings_repo.put(conn, "rolled-back", "1")
            raise KeyError("boom")
    assert sync_level(db) == 2 and settings_repo.get(db.connection(), "rolled-back") is None


def test_concurrent_writers_queue_instead_of_failing(appliance):
    """BEGIN IMMEDIATE + busy_timeout: eight threads writing at once all succeed."""
    errors = []

    def write(n):
        try:
            for i in range(25):
                with appliance.db.transaction() as conn:
                    settings_repo.put(conn, f"k{n}-{i}", "v")
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    count = appliance.db.connection().execute("SELECT count(*) FROM settings").fetchone()[0]
    assert count == 200


def test_reopen_with_the_right_key_reads_the_data(config):
    app = open_appliance(config, env={})
    with app.db.transaction() as conn:
        settings_repo.put(conn, "kept", "yes")
    app.close()
    again = open_appliance(config, create=False, env={})
    assert settings_repo.get(again.db.connection(), "kept") == "yes"
    again.close()
