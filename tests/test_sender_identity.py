"""The sender identity (CAN-SPAM/CASL): what launch checks need, the footer every message
carries, the API (anyone reads, admins write, audited) and the Settings page."""

from __future__ import annotations

import json
import re

import pytest

from appliance.db import audit_repo, settings_repo, users_repo
from appliance.services import sender_identity, sessions
from appliance.services.authz import Principal
from appliance.services.errors import PermissionDenied, ValidationError

from .support.access import add_user, login

ACME = {"company": "Acme Widgets GmbH", "postal_address": "Hauptstraße 1\r\n\r\n10115 Berlin  \nGermany",
        "website": "https://acme.example"}


def bearer(appliance, role: str) -> dict:
    email = f"{role}@x.test"
    conn = appliance.db.connection()
    user = users_repo.by_email(conn, email) or users_repo.by_id(conn, add_user(appliance, email, role=role))
    token, _ = sessions.issue(appliance.keys.sessions, user, idle_minutes=60, max_hours=1)
    return {"Authorization": f"Bearer {token}"}


def changes(appliance) -> list[dict]:
    rows = audit_repo.search(appliance.db.connection(), action="settings.sender_identity_changed", limit=50)
    return [dict(r, metadata=json.loads(r["metadata"])) for r in rows]


# -- the service ------------------------------------------------------------------------------

def test_unset_identity_reads_as_empty_strings_and_lists_what_is_missing(appliance):
    identity = sender_identity.get(appliance.db)
    assert identity == {"company": "", "postal_address": "", "website": ""}
    found = sender_identity.problems(identity)
    assert len(found) == 2 and "company name" in found[0] and "postal address" in found[1]
    assert sender_identity.problems({"company": "Acme", "postal_address": "  "}) == [found[1]]
    assert sender_identity.problems({"company": "Acme", "postal_address": "PO Box 7, Springfield"}) == []
    assert sender_identity.footer_text(identity) == ""


def test_footer_text_is_the_company_then_the_address_lines():
    identity = {"company": "Acme", "postal_address": "1 Main St\n  Springfield, IL 62701\n\nUSA", "website": ""}
    assert sender_identity.footer_text(identity) == "Acme\n1 Main St\nSpringfield, IL 62701\nUSA"
    assert sender_identity.footer_text(dict(identity, website="https://acme.example")) == \
        sender_identity.footer_text(identity)
    assert sender_identity.footer_text({"company": "Acme"}) == "Acme"


def test_input_is_validated_and_normalised():
    clean = sender_identity.parse(ACME)
    assert clean == {"company": "Acme Widgets GmbH", "postal_address": "Hauptstraße 1\n10115 Berlin\nGermany",
                     "website": "https://acme.example"}
    assert sender_identity.parse(dict(ACME, website="www.acme.example"))["website"] == "https://www.acme.example"
    assert sender_identity.parse(dict(ACME, company="Acme\r\nBcc: x@y.test"))["company"] == "Acme Bcc: x@y.test"
    with pytest.raises(ValidationError) as missing:
        sender_identity.parse({"website": ""})
    assert set(missing.value.fields) == {"company", "postal_address"}
    for website in ("ftp://acme.example", "javascript:alert(1)", "https://", "https://acme", "acme.example",
                    "https://user:pw@acme.example", "https://acme.example:port", "https://a cme.example"):
        with pytest.raises(ValidationError) as bad:
            sender_identity.parse(dict(ACME, website=website))
        assert set(bad.value.fields) == {"website"}, website
    for name, value in (("company", "x" * 201), ("postal_address", "\n".join("line") * 9),
                        ("postal_address", "a\x00b"), ("company", 7)):
        with pytest.raises(ValidationError) as bad:
            sender_identity.parse(dict(ACME, **{name: value}))
        assert name in bad.value.fields, (name, value)


def test_save_is_for_admins_and_audits_the_changed_fields(appliance):
    admin_id = add_user(appliance, "admin@x.test", role="admin")
    admin = Principal(user_id=admin_id, email="admin@x.test", role="admin", via="session")
    member = Principal(user_id=add_user(appliance, "m@x.test", role="member"), email="m@x.test", role="member",
                       via="session")
    with pytest.raises(PermissionDenied):
        sender_identity.save(appliance.db, member, ACME)
    sender_identity.save(appliance.db, admin, ACME)
    sender_identity.save(appliance.db, admin, dict(ACME, website=""))
    sender_identity.save(appliance.db, admin, dict(ACME, website=""))  # no change, no entry
    rows = changes(appliance)
    assert [r["metadata"]["fields"] for r in rows] == [["website"], ["company", "postal_address", "website"]]
    assert rows[0]["actor_label"] == "admin@x.test"
    stored = json.loads(settings_repo.get(appliance.db.connection(), sender_identity.SETTING))
    assert stored == {"company": "Acme Widgets GmbH", "postal_address": "Hauptstraße 1\n10115 Berlin\nGermany",
                      "website": ""}
    # a damaged stored value reads as unset rather than failing
    with appliance.db.transaction() as conn:
        settings_repo.put(conn, sender_identity.SETTING, "not json")
    assert sender_identity.get(appliance.db) == sender_identity.empty()


# -- the API ----------------------------------------------------------------------------------

def test_api_anyone_reads_admins_write(appliance, web):
    c = web.test_client()
    viewer, member, admin = (bearer(appliance, r) for r in ("viewer", "member", "admin"))
    assert c.get("/api/v1/settings/sender-identity").status_code == 401
    empty = c.get("/api/v1/settings/sender-identity", headers=viewer).get_json()
    assert {k: empty[k] for k in ("company", "postal_address", "website")} == sender_identity.empty()
    assert len(empty["problems"]) == 2 and empty["footer_text"] == ""

    assert c.put("/api/v1/settings/sender-identity", json=ACME, headers=member).status_code == 403
    r = c.put("/api/v1/settings/sender-identity", json=ACME, headers=admin)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["problems"] == [] and body["postal_address"] == "Hauptstraße 1\n10115 Berlin\nGermany"
    assert body["footer_text"] == "Acme Widgets GmbH\nHauptstraße 1\n10115 Berlin\nGermany"
    assert c.get("/api/v1/settings/sender-identity", headers=viewer).get_json() == body

    bad = c.put("/api/v1/settings/sender-identity", json={"company": "", "postal_address": "x",
                                                          "website": "ftp://x.test"}, headers=admin)
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["details"]["fields"]) == {"company", "website"}
    assert c.get("/api/v1/settings/sender-identity", headers=viewer).get_json() == body  # nothing lost
    assert c.put("/api/v1/settings/sender-identity", data="company=x", headers=admin).status_code == 415
    assert [r["metadata"]["fields"] for r in changes(appliance)] == [["company", "postal_address", "website"]]


# -- the page ---------------------------------------------------------------------------------

def test_settings_page_keeps_input_shows_errors_and_previews_the_footer(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    c = web.test_client()
    s = login(c, "admin@x.test")
    page = c.get("/settings/sender-identity")
    assert page.status_code == 200 and b'id="identity-problems"' in page.data
    assert b'href="/settings/sender-identity"' in page.data  # in the Settings navigation

    bad = c.post("/settings/sender-identity", data={"csrf_token": s.csrf, "company": "Acme & Sons",
                                                    "postal_address": "", "website": "acme"})
    assert bad.status_code == 400
    assert b'id="e-postal_address"' in bad.data and b'id="e-website"' in bad.data
    assert b'id="e-company"' not in bad.data
    assert re.search(rb'id="f-company"[^>]*value="Acme &amp; Sons"', bad.data)  # kept what was typed
    assert re.search(rb'id="f-website"[^>]*value="acme"', bad.data)

    ok = c.post("/settings/sender-identity", data=dict(ACME, csrf_token=s.csrf))
    assert ok.status_code == 302
    saved = c.get(ok.headers["Location"])
    assert b'id="identity-saved"' in saved.data and b'id="identity-problems"' not in saved.data
    preview = re.search(rb'<pre id="footer-preview">(.*?)</pre>', saved.data, re.S).group(1).decode()
    assert preview.startswith("--\nAcme Widgets GmbH\nHauptstraße 1\n10115 Berlin\nGermany\nUnsubscribe: ")
    assert b"Hauptstra\xc3\x9fe 1\n10115 Berlin\nGermany</textarea>" in saved.data


def test_settings_page_is_read_only_below_admin_and_needs_csrf(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    add_user(appliance, "member@x.test", role="member")
    a = web.test_client()
    login(a, "admin@x.test")
    refused = a.post("/settings/sender-identity", data=ACME)
    assert refused.status_code == 400 and b"CSRF check failed" in refused.data
    assert sender_identity.get(appliance.db) == sender_identity.empty()

    m = web.test_client()
    ms = login(m, "member@x.test")
    page = m.get("/settings/sender-identity")
    assert page.status_code == 200 and b'id="identity-facts"' in page.data and b'id="identity-form"' not in page.data
    assert b'href="/settings/sender-identity"' not in page.data  # the nav link is for admins
    assert m.post("/settings/sender-identity", data=dict(ACME, csrf_token=ms.csrf)).status_code == 403
    assert sender_identity.get(appliance.db) == sender_identity.empty()
