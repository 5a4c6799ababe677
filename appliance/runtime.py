"""What a running appliance is made of, and how it is opened. Shared by `serve` and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .config import Config
from .db import Database
from .db.migrator import migrate
from .keys import KeyRing, load_keyring
from .scheduler import Scheduler


@dataclass
class Appliance:
    config: Config
    keys: KeyRing
    db: Database
    scheduler: Scheduler | None = None
    engine: object | None = None  # the SendingEngine, in `mailflow serve` only
    sync: object | None = None  # the SyncEngine (IMAP read-back), in `mailflow serve` only

    def close(self) -> None:
        self.db.close()


def open_database(config: Config, keys: KeyRing, *, create: bool) -> Database:
    """Open the encrypted database. With create=True a missing file (only a missing one)
    is created, with its data directory made private (0700)."""
    data_dir = config.data_dir
    if create:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Database(config.database_path, keys.database, create=create)


def open_appliance(config: Config, *, create: bool = True, env: Mapping[str, str] | None = None,
                   apply_migrations: bool = True) -> Appliance:
    keys = load_keyring(config, os.environ if env is None else env)
    db = open_database(config, keys, create=create)
    try:
        if apply_migrations:
            migrate(db)
    except BaseException:
        db.close()
        raise
    return Appliance(config=config, keys=keys, db=db)
