"""Housekeeping jobs the scheduler runs in every appliance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..runtime import Appliance
from .setup import purge_expired_setup_tokens


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval: float
    run: Callable[[], object]
    first_delay: float = 0.0


def checkpoint(app: Appliance) -> None:
    """Fold the WAL back into the main file now and then, so it does not grow without bound
    under steady writes (SQLite's auto-checkpoint is skipped while readers hold old snapshots)."""
    app.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def jobs(app: Appliance) -> list[JobSpec]:
    return [
        JobSpec("maintenance.purge_setup_tokens", 3600, lambda: purge_expired_setup_tokens(app.db),
                first_delay=60),
        JobSpec("maintenance.wal_checkpoint", 300, lambda: checkpoint(app), first_delay=300),
    ]
