"""The scheduler skeleton: periodic jobs on a bounded pool, no overlap, clean stop."""

from __future__ import annotations

import threading
import time

from appliance.scheduler import Scheduler


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_runs_registered_jobs_repeatedly():
    s = Scheduler(max_workers=2, tick=0.01)
    counts = {"a": 0}
    s.register("a", 0.02, lambda: counts.__setitem__("a", counts["a"] + 1))
    s.start()
    assert s.state == "running"
    assert wait_until(lambda: counts["a"] >= 3)
    assert s.stop(2) is True
    assert s.state == "stopping"


def test_a_job_never_overlaps_itself():
    s = Scheduler(max_workers=4, tick=0.005)
    active, peak, runs = [0], [0], [0]
    lock = threading.Lock()

    def slow():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            runs[0] += 1

    s.register("slow", 0.001, slow)
    s.start()
    assert wait_until(lambda: runs[0] >= 4)
    s.stop(2)
    assert peak[0] == 1


def test_a_failing_job_is_counted_and_does_not_stop_others():
    s = Scheduler(max_workers=2, tick=0.01)
    ok = [0]

    def boom():
        raise ValueError("broken job")

    s.register("boom", 0.01, boom)
    s.register("ok", 0.01, lambda: ok.__setitem__(0, ok[0] + 1))
    s.start()
    assert wait_until(lambda: ok[0] >= 3)
    s.stop(2)
    boom_job = next(j for j in s.jobs() if j.name == "boom")
    assert boom_job.failures >= 1 and boom_job.runs == 0


def test_stop_waits_for_in_flight_work_within_the_bound():
    s = Scheduler(max_workers=1, tick=0.01)
    started, finished = threading.Event(), threading.Event()

    def job():
        started.set()
        time.sleep(0.3)
        finished.set()

    s.register("job", 60, job)
    s.start()
    assert started.wait(2)
    assert s.stop(timeout=5) is True
    assert finished.is_set()


def test_stop_reports_overrun_jobs():
    s = Scheduler(max_workers=1, tick=0.01)
    release = threading.Event()
    started = threading.Event()

    def stuck():
        started.set()
        release.wait(5)

    s.register("stuck", 60, stuck)
    s.start()
    assert started.wait(2)
    assert s.stop(timeout=0.1) is False
    release.set()


def test_first_delay_defers_the_first_run():
    s = Scheduler(max_workers=1, tick=0.01)
    ran = threading.Event()
    s.register("later", 60, ran.set, first_delay=30)
    s.start()
    assert not ran.wait(0.2)
    s.stop(1)
