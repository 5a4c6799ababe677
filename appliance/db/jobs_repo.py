"""Background jobs started by people (bulk checks, imports) and their progress."""

from __future__ import annotations

from .database import Connection, Row


def create(conn: Connection, kind: str, total: int, created_by: int | None, now: str) -> int:
    return conn.execute("INSERT INTO jobs (kind, status, total, created_by, created_at) VALUES (?, 'running', ?, ?, ?)",
                        (kind, total, created_by, now)).lastrowid


def progress(conn: Connection, job_id: int, *, ok: bool) -> None:
    column = "done" if ok else "failed"  # one of two fixed names
    conn.execute(f"UPDATE jobs SET {column} = {column} + 1 WHERE id = ?", (job_id,))


def set_import_progress(conn: Connection, job_id: int, done: int) -> None:
    """A running import's progress (records read so far); a job that has ended is left alone."""
    conn.execute("UPDATE jobs SET done = ? WHERE id = ? AND status = 'running'", (done, job_id))


def finish(conn: Connection, job_id: int, status: str, result: str, now: str) -> None:
    conn.execute("UPDATE jobs SET status = ?, result = ?, finished_at = ? WHERE id = ?",
                 (status, result, now, job_id))


def by_id(conn: Connection, job_id: int) -> Row | None:
    return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def fail_running(conn: Connection, now: str) -> int:
    """Jobs still 'running' when the process starts were cut off by a restart."""
    return conn.execute("UPDATE jobs SET status = 'failed', finished_at = ?, "
                        "result = '{\"error\": \"interrupted by a restart\"}' WHERE status = 'running'",
                        (now,)).rowcount
