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

import waitress

from . import logs
from .config import Config
from .logs import event
from .runtime import Appliance, open_appliance
from .scheduler import Scheduler
from .services import maintenance
from .services.setup import issue_setup_link

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
    scheduler = Scheduler(max_workers=app.config.scheduler_threads)
    for job in maintenance.jobs(app):
        scheduler.register(job.name, job.interval, job.run, first_delay=job.first_delay)
    return scheduler


def serve(config: Config, *, out=sys.stdout) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    from webui import create_app  # the composition root is the one place that may do this

    logs.configure(config.log_level, config.log_format)
    app = open_appliance(config, create=True)
    app.scheduler = build_scheduler(app)
    host, port = config.listen
    server = waitress.create_server(create_app(app), host=host, port=port, threads=HTTP_THREADS,
                                    ident="MailFlow",
                                    channel_timeout=60, cleanup_interval=10)
    url = f"http://{host}:{server.effective_port}"

    def on_signal(signum, _frame):
        # Raised inside waitress's loop in the main thread: it stops accepting, then
        # run() below returns and we drain in-flight work.
        event(log, "server.stopping", signal=signal.Signals(signum).name)
        raise SystemExit(0)

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
        server.run()
    except SystemExit:
        pass
    finally:
        sd_notify("STOPPING=1")
        drain(server, app, config.shutdown_timeout)
    event(log, "server.stopped")
    return 0


def drain(server, app: Appliance, timeout: float) -> None:
    """Stop accepting, let in-flight requests and jobs finish (bounded), close the database."""
    server.close()
    # waitress's dispatcher waits for running tasks up to its timeout, then abandons them
    requests_done = threading.Thread(target=server.task_dispatcher.shutdown,
                                     kwargs={"cancel_pending": True, "timeout": timeout})
    requests_done.start()
    jobs_done = app.scheduler.stop(timeout) if app.scheduler else True
    requests_done.join(timeout)
    if not jobs_done or requests_done.is_alive():
        event(log, "server.drain_timeout", level=logging.WARNING, seconds=timeout)
    app.close()
