"""Background work people start and watch (bulk live checks): bounded concurrency, and
progress in the database so any page or API client can show it."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..db import Database, jobs_repo
from ..db.timefmt import utcnow_iso
from ..logs import event
from .authz import Principal
from .errors import NotFound

log = logging.getLogger("mailflow.jobs")
MAX_PARALLEL = 8


def public(row) -> dict:
    return {"id": row["id"], "kind": row["kind"], "status": row["status"], "total": row["total"],
            "done": row["done"], "failed": row["failed"], "created_by": row["created_by"],
            "created_at": row["created_at"],
            "finished_at": row["finished_at"], "result": json.loads(row["result"])}


def get(db: Database, job_id: int, principal: Principal | None = None) -> dict:
    """A job's progress; people see their own jobs, admins every job."""
    row = jobs_repo.by_id(db.connection(), job_id)
    if row is None or (principal is not None and row["created_by"] != principal.user_id
                       and not principal.has_role("admin")):
        raise NotFound("No such job.")
    return public(row)


def start(db: Database, kind: str, items: list, work: Callable[[object], bool], *,
          created_by: int | None, parallel: int = MAX_PARALLEL, wait: bool = False) -> int:
    """Run work(item) for every item, at most `parallel` at a time; work returns True on
    success. Progress is committed item by item. wait=True returns when all are done."""
    with db.transaction() as conn:
        job_id = jobs_repo.create(conn, kind, len(items), created_by, utcnow_iso())

    def one(item) -> None:
        try:
            ok = bool(work(item))
        except Exception as exc:  # one bad item must not stop the rest; it counts as failed
            event(log, "job.item_failed", level=logging.ERROR, job=job_id, error=f"{type(exc).__name__}: {exc}")
            ok = False
        # a progress count; an interrupted job is failed at start-up
        with db.transaction(durable=False) as conn:
            jobs_repo.progress(conn, job_id, ok=ok)

    def run_all() -> None:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items) or 1)),
                                thread_name_prefix=f"mailflow-{kind}") as pool:
            list(pool.map(one, items))
        with db.transaction() as conn:
            jobs_repo.finish(conn, job_id, "done", "{}", utcnow_iso())

    if wait:
        run_all()
    else:
        threading.Thread(target=run_all, name=f"mailflow-job-{job_id}", daemon=True).start()
    return job_id


def fail_interrupted(db: Database) -> int:
    """At start-up: a job left running by the previous process will never finish."""
    with db.transaction() as conn:
        return jobs_repo.fail_running(conn, utcnow_iso())
