"""Numbered forward-only migrations with a checksum ledger; a failure leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from appliance.db import Database
from appliance.db.migrator import MIGRATIONS_DIR, MigrationError, discover, migrate, status

from .support.appliance import serve_env


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "m.db", os.urandom(32), create=True)
    yield database
    database.close()


def tables(db) -> set[str]:
    rows = db.connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def test_shipped_migrations_apply_once(db):
    applied = migrate(db)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert migrate(db) == []
    assert {"settings", "setup_tokens", "schema_migrations"} <= tables(db)
    assert all(s.applied_at for s in status(db))


def test_a_failed_migration_leaves_nothing_half_applied(db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE one (id INTEGER PRIMARY KEY);")
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE two (id INTEGER PRIMARY KEY);\n"
        "INSERT INTO one (id) VALUES (1);\n"
        "INSERT INTO no_such_table VALUES (1);\n")
    with pytest.raises(MigrationError, match="0002_broken failed and was rolled back"):
        migrate(db, folder)
    assert "two" not in tables(db)
    assert db.connection().execute("SELECT count(*) FROM one").fetchone()[0] == 0
    assert [(s.migration.version, bool(s.applied_at)) for s in status(db, folder)] == [(1, True), (2, False)]
    # fixed file: the next run applies it
    (folder / "0002_broken.sql").write_text("CREATE TABLE two (id INTEGER PRIMARY KEY);")
    assert [m.version for m in migrate(db, folder)] == [2]


def test_an_edited_applied_migration_is_refused(db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(db, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db, folder)


def test_a_database_from_a_newer_version_is_refused(db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "9999_future.sql").write_text("CREATE TABLE future (id INTEGER);")
    migrate(db, folder)
    with pytest.raises(MigrationError, match="newer version"):
        migrate(db)


def test_badly_named_files_are_refused(tmp_path):
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError, match="NNNN_description.sql"):
        discover(tmp_path)


def test_migrate_status_cli(tmp_path):
    env = serve_env(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "appliance.cli", *a], env=env,
                                    capture_output=True, text=True, timeout=60)
    missing = run("migrate", "--status")
    assert missing.returncode == 78 and "run `mailflow migrate`" in missing.stderr
    assert not (tmp_path / "data" / "mailflow.db").exists()
    first = run("migrate").stdout
    assert "applied 0001_core" in first and f"{len(discover())} migration(s) applied" in first
    listing = run("migrate", "--status")
    assert listing.returncode == 0
    assert "0001_core" in listing.stdout and "pending" not in listing.stdout
    assert "database is up to date" in run("migrate").stdout
