"""No double sends, nothing lost: the real `mailflow serve`, killed with SIGKILL again and again
while it sends, must in the end have delivered every step to every lead exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import requests

from appliance.runtime import open_appliance

from .support.appliance import make_config
from .support.live_server import LiveServer
from .support.mailstack import MailStack

pytestmark = [pytest.mark.mailstack, pytest.mark.slow]
ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "a long and memorable passphrase"
LEADS = 120
STEPS = 2
KILLS = 6


def api(server: LiveServer, token: str, method: str, path: str, headers: dict | None = None, **kw):
    headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    r = requests.request(method, server.url + path, headers=headers, timeout=30, **kw)
    assert r.status_code < 300, (path, r.status_code, r.text[:500])
    return r.json() if r.content else None


def counts(root) -> Counter:
    """Message states, read from the encrypted database beside the running server (WAL)."""
    app = open_appliance(make_config(root), create=False, env={}, apply_migrations=False)
    try:
        return Counter(dict(app.db.connection().execute("SELECT status, count(*) FROM messages GROUP BY status")))
    finally:
        app.close()


def wait_for_a_burst(root, timeout: float = 30) -> None:
    """Return as soon as the count of sent messages grows between two looks 20 ms apart."""
    app = open_appliance(make_config(root), create=False, env={}, apply_migrations=False)
    try:
        conn = app.db.connection()
        sent = lambda: conn.execute("SELECT count(*) FROM messages WHERE status = 'sent'").fetchone()[0]  # noqa
        before, deadline = sent(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = sent()
            if now > before:
                return
            before = now
    finally:
        app.close()


def interruptions(root) -> dict[str, int]:
    """How many sends the kills actually cut: settled from the Sent folder, or planned again."""
    app = open_appliance(make_config(root), create=False, env={}, apply_migrations=False)
    try:
        conn = app.db.connection()
        settled = conn.execute("SELECT count(*) FROM events WHERE kind = 'sent' AND data LIKE '%reconciled%'").fetchone()[0]
        retried = conn.execute("SELECT count(*) FROM messages WHERE attempts > 1").fetchone()[0]
        return {"settled_as_sent": settled, "sent_again_after_proof": retried}
    finally:
        app.close()


def delivered(stack: MailStack) -> Counter:
    client = stack.imap(BOB)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["FROM", ALICE])
        heads = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (TO SUBJECT)]"]) if uids else {}
        return Counter(v[b"BODY[HEADER.FIELDS (TO SUBJECT)]"].decode().replace("\r\n", " ").strip()
                       for v in heads.values())
    finally:
        client.logout()


def test_sigkill_during_sending_never_sends_twice_and_loses_nothing(tmp_path):
    # the server files submitted mail in Sent itself (as Gmail does): reconciliation can prove
    # both "it went" and "it did not"
    stack = MailStack(users={ALICE: "alice-app-pw", BOB: "bob-app-pw"}, save_sent_copy=True).start()
    env = {"MAILFLOW_DOMAIN_SPREAD_SECONDS": "0"}
    server = LiveServer(tmp_path, **env).start()
    try:
        subprocess.run([sys.executable, "-m", "appliance.cli", "create-admin", "boss@example.com"], env=server.env,
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        token = requests.post(server.url + "/api/v1/auth/login", json={"email": "boss@example.com",
                                                                       "password": PASSWORD}, timeout=30).json()["token"]
        api(server, token, "PUT", "/api/v1/settings/sender-identity",
            json={"company": "Acme GmbH", "postal_address": "Hauptstr. 1, 10115 Berlin"})
        box = api(server, token, "POST", "/api/v1/mailboxes", json={
            "email": ALICE, "display_name": "Alice", "smtp_host": stack.host, "smtp_port": stack.submission_port,
            "smtp_security": "starttls", "imap_host": stack.host, "imap_port": stack.imaps_port,
            "imap_security": "ssl", "password": "alice-app-pw", "tls_ca_pem": stack.cafile.read_text(),
            "min_gap_seconds": 0, "max_gap_seconds": 0, "daily_limit": 10000, "save_sent_copy": False})
        assert box["status"] == "active", box
        csv = "email,first_name\n" + "".join(f"bob+k{i}@example.test,Lead{i}\n" for i in range(LEADS))
        api(server, token, "POST", "/api/v1/leads/import?tag=kill", data=csv.encode(),
            headers={"Content-Type": "text/csv"})
        campaign = api(server, token, "POST", "/api/v1/campaigns", json={
            "name": "Crash test", "mailbox_ids": [box["id"]], "steps": [
                {"delay_minutes": 0, "variants": [{"subject": "One for {{first_name}}", "body": "Step one."}]},
                {"delay_minutes": 0, "variants": [{"subject": "Two for {{first_name}}", "body": "Step two."}]}]})
        assert api(server, token, "POST", f"/api/v1/campaigns/{campaign['id']}/leads", json={"tag": "kill"})[
            "enrolled"] == LEADS
        api(server, token, "POST", f"/api/v1/campaigns/{campaign['id']}/launch")

        rng = random.Random(20261126)
        for _ in range(KILLS):
            wait_for_a_burst(tmp_path)  # kill while messages are going out, not between bursts
            time.sleep(rng.uniform(0, 0.05))
            server.stop(signal.SIGKILL)
            server = LiveServer(tmp_path, **env).start()

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = counts(tmp_path)
            if state.get("sent", 0) == LEADS * STEPS or state.get("uncertain"):
                break
            time.sleep(1)
        assert state == Counter({"sent": LEADS * STEPS}), state
        interrupted = interruptions(tmp_path)
        print("kills landed mid-send:", interrupted)
        # the test proves something only if kills really cut sends short (they aim at bursts)
        assert sum(interrupted.values()) >= 1, interrupted
    finally:
        assert server.stop() == 0
        mail = delivered(stack)
        stack.stop()
    # every lead got each step exactly once
    assert len(mail) == LEADS * STEPS, f"{len(mail)} distinct messages for {LEADS * STEPS} expected"
    doubles = {k: v for k, v in mail.items() if v > 1}
    assert doubles == {}
