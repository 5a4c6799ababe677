"""Health of the running appliance, as /healthz and `mailflow doctor` report it."""

from __future__ import annotations

import logging

from ..db.database import DatabaseError
from ..logs import event
from ..runtime import Appliance

log = logging.getLogger("mailflow.health")


def check(app: Appliance) -> dict[str, str]:
    try:
        app.db.ping()
        db_state = "ok"
    except DatabaseError as exc:
        event(log, "health.db_failed", level=logging.ERROR, error=str(exc))
        db_state = "error"
    scheduler = app.scheduler.state if app.scheduler is not None else "not_started"
    # the sync starts a few seconds after the scheduler: only a failed one degrades the health
    sync = app.sync.state if app.sync is not None else "not_started"
    ok = db_state == "ok" and scheduler == "running" and sync != "failed"
    return {"status": "ok" if ok else "degraded", "db": db_state, "scheduler": scheduler, "sync": sync}
