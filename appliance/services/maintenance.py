"""Housekeeping jobs the scheduler runs in every appliance."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ..logs import event
from ..runtime import Appliance
from . import audit
from .mailboxes import recheck_errored
from .sessions import purge_revoked
from .setup import purge_expired_setup_tokens
from .uploads import PURGE_INTERVAL, purge_stale_uploads

log = logging.getLogger("mailflow.maintenance")


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval: float
    run: Callable[[], object]
    first_delay: float = 0.0


def log_audit_anchor(app: Appliance) -> None:
    event(log, "audit.anchor", **audit.anchor(app.db))


def jobs(app: Appliance) -> list[JobSpec]:
    return [
        JobSpec("maintenance.purge_setup_tokens", 3600, lambda: purge_expired_setup_tokens(app.db),
                first_delay=60),
        JobSpec("maintenance.purge_revoked_sessions", 3600, lambda: purge_revoked(app.db), first_delay=90),
        JobSpec("maintenance.audit_anchor", 3600, lambda: log_audit_anchor(app), first_delay=5),
        JobSpec("maintenance.wal_checkpoint", 300, app.db.checkpoint, first_delay=300),
        JobSpec("maintenance.purge_lead_uploads", PURGE_INTERVAL, lambda: purge_stale_uploads(app.config.data_dir)),
        JobSpec("mailboxes.recheck_errors", 600, lambda: recheck_errored(app.db, app.keys), first_delay=120),
    ]
