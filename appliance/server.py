"""The composition root: builds the one server process (waitress + Flask app + scheduler).

This is the only module of `appliance` that imports the web layer (see DESIGN.md).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

import waitress
from waitress import wasyncore

from . import logs
from .config import Config
from .logs import event
from .runtime import Appliance, open_appliance
from .scheduler import Scheduler
from .services import campaigns, jobs, maintenance, webhook_delivery
from .services.engine import SendingEngine
from .services.planner import plan_due
from .services.reconcile import Orphans
from .services.sender import Policy
from .services.setup import issue_setup_link
from .services.sync import SyncEngine

log = logging.getLogger("mailflow.server")
HTTP_THREADS = 8


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def build_scheduler(app: Appliance) -> Scheduler:
    """Housekeeping plus the sending engine: reconcile what an earlier process left mid-send,
    plan due steps, and hand due messages to per-mailbox workers."""
    scheduler = Scheduler(max_workers=app.config.scheduler_threads)
    app.engine = SendingEngine(app, threads=app.config.sending_threads,
                               policy=Policy(domain_spread_seconds=app.config.domain_spread_seconds,
                                             base_url=app.config.public_url))
    for job in maintenance.jobs(app) + sending_jobs(app) + webhook_delivery.jobs(app):
        scheduler.register(job.name, job.interval, job.run, first_delay=job.first_delay)
    # Mailbox sync: the tick follows the active mailboxes and starts due cycles; IDLE events
    # start their own (the engine's selector thread), so replies do not wait for a tick.
    app.sync = SyncEngine(app.db, app.keys, threads=app.config.sync_threads,
                          interval=app.config.sync_interval_seconds, idle=app.config.sync_idle)
    scheduler.register("sync.dispatch", 1, app.sync.tick, first_delay=3)
    return scheduler


def sending_jobs(app: Appliance) -> list[maintenance.JobSpec]:
    orphans = Orphans(app.db)  # before anything is sent: every `sending` row now is an orphan
    return [
        maintenance.JobSpec("sending.reconcile", 30, lambda: orphans.settle(app.db, app.keys)),
        maintenance.JobSpec("sending.plan", 5, lambda: plan_due(app.db), first_delay=1),
        maintenance.JobSpec("sending.dispatch", 1, app.engine.tick, first_delay=2),
        maintenance.JobSpec("campaigns.complete_finished", 60, lambda: campaigns.complete_finished(app.db),
                            first_delay=30),
    ]


def stop_background(app: Appliance, timeout: float) -> None:
    """No new work first (scheduler), then let the senders finish the message in hand."""
    if app.scheduler is not None:
        app.scheduler.stop(timeout)
    sync_stopper = threading.Thread(target=app.sync.stop, args=(timeout,)) if app.sync is not None else None
    if sync_stopper is not None:
        sync_stopper.start()  # beside the senders: both within the one timeout
    if app.engine is not None:
        app.engine.stop(timeout)
    if sync_stopper is not None:
        sync_stopper.join(timeout)


def serve(config: Config, *, out=sys.stdout) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    from webui import create_app  # the composition root is the one place that may do this

    logs.configure(config.log_level, config.log_format)
    app = open_appliance(config, create=True)
    jobs.fail_interrupted(app.db)
    host, port = config.listen
    # Forwarding headers are judged by webui's TrustedProxyMiddleware, which knows CIDR ranges
    # and strips them from everyone else; waitress's own handling knows only one proxy IP.
    server = waitress.create_server(create_app(app), host=host, port=port, threads=HTTP_THREADS,
                                    ident="MailFlow", clear_untrusted_proxy_headers=False,
                                    channel_timeout=60, cleanup_interval=10)
    url = f"http://{host}:{server.effective_port}"
    if config.public_url is None:
        config = config.with_overrides(public_url=url)
        app.config = config
    app.scheduler = build_scheduler(app)

    stop = threading.Event()

    def on_signal(signum, _frame):
        event(log, "server.stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    app.scheduler.start()
    setup_link = issue_setup_link(app.db, config.public_url, config.setup_link_ttl)
    print(f"MailFlow is listening on {url}", file=out)
    if config.public_url.rstrip("/") != url:
        print(f"Public URL: {config.public_url}", file=out)
    if setup_link:
        print(f"Create the first admin account (one-time link, valid {config.setup_link_ttl // 3600} h):"
              f"\n  {setup_link}", file=out)
    out.flush()
    event(log, "server.started", url=url, setup_pending=bool(setup_link))
    sd_notify("READY=1")
    try:
        while not stop.is_set():
            poll(server)
    finally:
        sd_notify("STOPPING=1")
        drain(server, app, config.shutdown_timeout)
    event(log, "server.stopped")
    return 0


def poll(server, timeout: float = 0.2) -> None:
    """One turn of waitress's I/O loop. We drive the loop ourselves (instead of server.run())
    so that shutdown can keep it turning while in-flight responses are still being written."""
    wasyncore.loop(timeout=timeout, map=server._map, count=1)


def _busy(server) -> bool:
    tasks = server.task_dispatcher
    return bool(tasks.active_count or tasks.queue or any(
        ch.requests or ch.total_outbufs_len for ch in list(server.active_channels.values())))


def drain(server, app: Appliance, timeout: float) -> None:
    """Stop accepting, let in-flight requests and jobs finish (bounded), close the database.

    waitress's own close() closes every socket at once, which would cut off responses that
    a worker thread is still producing; so first close only the listening socket, then keep
    the I/O loop turning until requests are answered, then close the rest."""
    deadline = time.monotonic() + timeout
    wasyncore.dispatcher.close(server)  # the listening socket only: no new connections
    background = threading.Thread(target=stop_background, args=(app, timeout))
    background.start()
    while _busy(server) and time.monotonic() < deadline:
        poll(server, 0.05)
    in_flight = _busy(server)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
    server.trigger.close()
    wasyncore.close_all(server._map)
    background.join(max(0.0, deadline - time.monotonic()))
    if in_flight or background.is_alive():
        event(log, "server.drain_timeout", level=logging.WARNING, seconds=timeout)
    app.close()
