"""The real `mailflow serve` process: health, headers, loopback-only, setup link, signals."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
import waitress

from appliance.server import drain, poll
from appliance.scheduler import Scheduler

from .support.appliance import serve_env
from .support.live_server import LiveServer


def test_healthz(shared_live_server):
    r = shared_live_server.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body.pop("sync") in ("not_started", "running")  # the sync's first tick comes a few seconds in
    assert body == {"status": "ok", "db": "ok", "scheduler": "running"}


@pytest.mark.parametrize("path", ["/", "/healthz", "/static/app.css", "/nope", "/api/v1/nope"])
def test_strict_headers_on_every_response(shared_live_server, path):
    r = shared_live_server.get(path)
    csp = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert r.headers["X-Frame-Options"] == "DENY"
    # plain HTTP on loopback: HSTS would be meaningless (and ignored by browsers)
    assert "Strict-Transport-Security" not in r.headers


def test_errors_are_json_on_api_paths_and_pages_elsewhere(shared_live_server):
    api = shared_live_server.get("/api/v1/nope")
    assert api.status_code == 404 and api.headers["Content-Type"] == "application/json"
    assert api.json()["error"]["code"] == "not_found"
    page = shared_live_server.get("/nope")
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "Traceback" not in page.text


def test_forwarded_headers_from_a_stranger_are_ignored(shared_live_server):
    r = shared_live_server.get("/healthz", headers={"X-Forwarded-Proto": "https",
                                                     "X-Forwarded-For": "203.0.113.9"})
    assert "Strict-Transport-Security" not in r.headers


def test_hsts_with_preload_behind_a_trusted_https_proxy():
    root = Path(tempfile.mkdtemp(prefix="mailflow-live-"))
    server = LiveServer(root, MAILFLOW_TRUSTED_PROXIES="127.0.0.1").start()
    try:
        r = server.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert r.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains; preload"
        assert "Strict-Transport-Security" not in server.get("/healthz").headers
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_setup_link_is_printed_works_and_is_replaced_on_restart(live_server):
    link = live_server.setup_link
    assert link and link.startswith(live_server.url + "/setup/")
    r = requests.get(link, timeout=10)
    assert r.status_code == 200 and 'data-state="valid"' in r.text
    token = link.rsplit("/", 1)[1]
    assert token not in "\n".join(live_server.stderr_lines)  # never in the logs
    assert live_server.get("/setup/not-a-real-token").status_code == 404

    assert live_server.stop() == 0
    again = LiveServer(live_server.root).start()
    try:
        assert again.setup_link and again.setup_link != link
        assert requests.get(again.setup_link, timeout=10).status_code == 200
        old = requests.get(again.url + "/setup/" + token, timeout=10)
        assert old.status_code == 404  # only the newest link works
    finally:
        again.stop()


def test_logs_are_structured_json_lines(live_server):
    live_server.get("/healthz")
    assert live_server.stop() == 0
    events = [json.loads(line) for line in live_server.stderr_lines]
    names = [e["event"] for e in events]
    assert "server.started" in names and "server.stopped" in names
    assert all({"ts", "level", "event"} <= e.keys() for e in events)


def test_sigterm_exits_0_and_leaves_a_clean_database(live_server):
    assert live_server.get("/healthz").status_code == 200
    assert live_server.stop(signal.SIGTERM) == 0
    data = live_server.root / "data"
    # the last connection closed cleanly: the WAL was checkpointed into the main file
    wal = data / "mailflow.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_non_loopback_bind_is_refused_without_a_trusted_proxy(tmp_path):
    env = serve_env(tmp_path, MAILFLOW_LISTEN="0.0.0.0:0")
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "not a loopback address" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_non_loopback_bind_is_allowed_behind_a_trusted_proxy(tmp_path):
    server = LiveServer(tmp_path, MAILFLOW_LISTEN="0.0.0.0:0", MAILFLOW_TRUSTED_PROXIES="127.0.0.1").start()
    try:
        port = server.url.rsplit(":", 1)[1]
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        assert server.stop() == 0


def test_sd_notify_ready_and_stopping(tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    server = LiveServer(tmp_path, NOTIFY_SOCKET=str(sock_path)).start()
    try:
        assert sock.recv(256) == b"READY=1"
        server.proc.send_signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
    finally:
        assert server.stop() == 0
        sock.close()


def test_drain_lets_an_in_flight_request_finish(appliance):
    """SIGTERM's drain: stop accepting, finish the running request, then close the database."""
    entered = threading.Event()

    def slow_app(environ, start_response):
        entered.set()
        time.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    server = waitress.create_server(slow_app, host="127.0.0.1", port=0, threads=2)
    port = server.effective_port
    result = {}
    client = threading.Thread(target=lambda: result.update(
        r=requests.get(f"http://127.0.0.1:{port}/", timeout=10)))
    client.start()
    while not entered.is_set():  # serve (as `mailflow serve` does) until the request is running
        poll(server, 0.05)
    appliance.scheduler = Scheduler(1)
    appliance.scheduler.start()
    drain(server, appliance, timeout=5)
    client.join(10)
    assert result["r"].status_code == 200 and result["r"].text == "finished"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(RuntimeError, match="closed"):
        appliance.db.connection()
