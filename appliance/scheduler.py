"""The in-process scheduler: periodic jobs on a bounded thread pool.

State that matters lives in the database, never here: a restart loses nothing but
the timing of the next tick. A job never overlaps itself; a slow job delays only
its own next run. `stop()` stops handing out work, then waits (bounded) for
in-flight jobs, so SIGTERM never cuts a job in half unless it overruns.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from .logs import event

log = logging.getLogger("mailflow.scheduler")


@dataclass
class Job:
    name: str
    interval: float
    run: Callable[[], object]
    next_due: float = 0.0
    running: Future | None = field(default=None, repr=False)
    runs: int = 0
    failures: int = 0


class Scheduler:
    def __init__(self, max_workers: int = 4, *, tick: float = 0.5):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mailflow-job")
        self._jobs: dict[str, Job] = {}
        self._tick = tick
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self._thread is None:
            return "not_started"
        if self._stopping.is_set():
            return "stopping"
        return "running" if self._thread.is_alive() else "stopped"

    def register(self, name: str, interval: float, run: Callable[[], object], *,
                 first_delay: float = 0.0) -> None:
        with self._lock:
            if name in self._jobs:
                raise ValueError(f"job {name!r} is already registered")
            self._jobs[name] = Job(name, interval, run, next_due=time.monotonic() + first_delay)
        self._wake.set()

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mailflow-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                due = [j for j in self._jobs.values()
                       if j.next_due <= now and (j.running is None or j.running.done())]
                for job in due:
                    job.running = self._pool.submit(self._run, job)
                    job.next_due = now + job.interval
                waits = [j.next_due - now for j in self._jobs.values()]
            self._wake.wait(max(0.01, min([self._tick, *waits])))
            self._wake.clear()

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        try:
            job.run()
            job.runs += 1
        except Exception as exc:  # a failing job must not kill the scheduler; it is logged and retried
            job.failures += 1
            event(log, "job.failed", level=logging.ERROR, job=job.name, error=f"{type(exc).__name__}: {exc}")
        else:
            event(log, "job.ran", level=logging.DEBUG, job=job.name,
                  seconds=round(time.monotonic() - started, 3))

    def stop(self, timeout: float) -> bool:
        """Stop handing out work and wait up to `timeout` s for in-flight jobs.
        Returns True when everything finished in time."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            running = [j.running for j in self._jobs.values() if j.running is not None]
        _, not_done = wait(running, timeout=timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return not not_done
