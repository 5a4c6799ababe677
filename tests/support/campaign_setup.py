"""Building a launchable campaign directly through the services, for sending tests."""

from __future__ import annotations

import json

from appliance.db.timefmt import utcnow_iso
from appliance.services import campaigns, mailboxes, sender_identity
from appliance.services.authz import Principal

from .access import add_user

ADMIN = "admin@x.test"


def admin_principal(app) -> Principal:
    row = app.db.connection().execute("SELECT id FROM users WHERE email = ?", (ADMIN,)).fetchone()
    user_id = row[0] if row else add_user(app, ADMIN, role="admin")
    return Principal(user_id=user_id, email=ADMIN, role="admin", via="session")


def connect_mailbox(app, stack, email: str, **over) -> dict:
    body = {"email": email, "display_name": email.split("@")[0].title(), "smtp_host": stack.host,
            "smtp_port": stack.submission_port, "smtp_security": "starttls", "imap_host": stack.host,
            "imap_port": stack.imaps_port, "imap_security": "ssl", "password": stack.users[email],
            "tls_ca_pem": stack.cafile.read_text(), "min_gap_seconds": 0, "max_gap_seconds": 0,
            "daily_limit": 1000, "save_sent_copy": False}
    body.update(over)
    box = mailboxes.create(app.db, app.keys, admin_principal(app), body)
    mailboxes.check(app.db, app.keys, box["id"], admin_principal(app).actor())
    return mailboxes.get(app.db, box["id"])


def insert_leads(app, rows: list[dict]) -> list[int]:
    """Insert leads directly (the leads service has its own tests): each row an email plus
    optional first_name, company, timezone, status, custom and tags."""
    now = utcnow_iso()
    ids = []
    with app.db.transaction() as conn:
        for row in rows:
            email = row["email"]
            cur = conn.execute(
                "INSERT INTO leads (email, email_domain, first_name, company, timezone, status, custom, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (email, email.split("@")[1], row.get("first_name", ""), row.get("company", ""),
                 row.get("timezone", ""), row.get("status", "new"), json.dumps(row.get("custom", {})), now, now))
            ids.append(cur.lastrowid)
            for tag in row.get("tags", []):
                conn.execute("INSERT INTO lead_tags (lead_id, tag) VALUES (?, ?)", (cur.lastrowid, tag))
    return ids


def add_leads(app, emails: list[str], **fields) -> list[int]:
    """Leads named Lead0, Lead1 ... at company "Co", unless `fields` say otherwise."""
    return insert_leads(app, [{"email": email, "first_name": fields.get("first_name", f"Lead{i}"),
                               "company": fields.get("company", "Co"), "timezone": fields.get("timezone", "")}
                              for i, email in enumerate(emails)])


def launched_campaign(app, mailbox_ids: list[int], lead_ids: list[int], *, steps=None, launch=True, **settings):
    principal = admin_principal(app)
    sender_identity.save(app.db, principal, {"company": "Acme GmbH", "postal_address": "Hauptstr. 1, Berlin"})
    steps = steps or [
        {"delay_minutes": 0, "variants": [{"subject": "Hello {{first_name}}", "body": "Hi {{first_name}}, step one."}]},
        {"delay_minutes": 60, "variants": [{"subject": "", "body": "Step two, {{first_name}}."}]},
    ]
    campaign = campaigns.create(app.db, principal, {"name": "Test", "steps": steps, "mailbox_ids": mailbox_ids,
                                                    **settings})
    campaigns.enroll(app.db, principal, campaign["id"], lead_ids)
    if launch:
        campaigns.launch(app.db, principal, campaign["id"])
    return campaign
