"""Numbered, forward-only `.sql` migrations with a checksum ledger.

Files are named `NNNN_description.sql`. Each is applied once, inside one transaction
together with its ledger row, so a failing migration leaves nothing half-applied.
An applied migration whose file has changed since is refused: the ledger is the
record of what the database really went through.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError
from .database import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


class MigrationError(ConfigError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: str | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, path.stem, path.read_text())
    return [found[v] for v in sorted(found)]


def _ledger(db: Database) -> dict[int, tuple[str, str, str]]:
    conn = db.connection()
    conn.execute(LEDGER_DDL)
    rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {r["version"]: (r["name"], r["checksum"], r["applied_at"]) for r in rows}


def status(db: Database, directory: Path = MIGRATIONS_DIR) -> list[MigrationState]:
    migrations = discover(directory)
    ledger = _ledger(db)
    known = {m.version for m in migrations}
    newer = sorted(v for v in ledger if v not in known)
    if newer:
        raise MigrationError(f"the database has migration {newer[-1]:04d}, which this MailFlow does not "
                             "know: it was written by a newer version; upgrade MailFlow")
    states = []
    for m in migrations:
        applied = ledger.get(m.version)
        if applied and applied[1] != m.checksum:
            raise MigrationError(f"migration {m.name} changed after it was applied; "
                                 "restore the original file (migrations are forward-only)")
        states.append(MigrationState(m, applied[2] if applied else None))
    return states


def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration in order; return those applied."""
    applied = []
    for state in status(db, directory):
        if state.applied_at is None:
            _apply(db, state.migration)
            applied.append(state.migration)
    return applied


def _apply(db: Database, migration: Migration) -> None:
    conn = db.connection()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        # executescript runs statement by statement; the BEGIN at its head keeps all of it,
        # and the ledger row below, in one transaction that either commits whole or not at all.
        conn.executescript("BEGIN IMMEDIATE;\n" + migration.sql)
        conn.execute("INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                     "VALUES (?, ?, ?, ?)", (migration.version, migration.name, migration.checksum, now))
        conn.execute("COMMIT")
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from None
