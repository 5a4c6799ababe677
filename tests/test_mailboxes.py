"""Mailboxes against the real local mail stack: connect, live checks, health, secrets at rest,
credential-read auditing, CSV bulk connect, roles."""

from __future__ import annotations

import io
import json
import time

import pytest

from appliance.db import audit_repo, mailboxes_repo
from appliance.services import mailboxes
from appliance.services.audit import Actor

from .support.access import add_user, login

pytestmark = pytest.mark.mailstack
ALICE, BOB = "alice@example.test", "bob@example.test"


def payload(ms, email=ALICE, **over):
    body = {"email": email, "display_name": "Alice Sales", "smtp_host": ms.host, "smtp_port": ms.submission_port,
            "smtp_security": "starttls", "imap_host": ms.host, "imap_port": ms.imaps_port, "imap_security": "ssl",
            "password": ms.users.get(email, "x"), "tls_ca_pem": ms.cafile.read_text(), "tags": ["EU", "warm"],
            "daily_limit": 40}
    body.update(over)
    return body


@pytest.fixture
def admin(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    return login(web.test_client(), "admin@x.test").headers(bearer=True)


def audit_actions(appliance, action):
    return [dict(r) for r in audit_repo.search(appliance.db.connection(), action=action, limit=500)]


def test_connect_runs_the_live_check_and_never_returns_the_password(appliance, web, admin, mailstack):
    c = web.test_client()
    r = c.post("/api/v1/mailboxes", json=payload(mailstack), headers=admin)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["check"]["smtp"]["ok"] and body["check"]["imap"]["ok"]
    assert body["check"]["imap"]["folders"] == {"inbox": "INBOX", "sent": "Sent", "junk": "Spam"}
    assert body["status"] == "active" and body["sent_folder"] == "Sent" and body["junk_folder"] == "Spam"
    assert body["tags"] == ["eu", "warm"] and body["tls"] == {"mode": "ca"} and body["username"] == ALICE
    text = json.dumps(body) + c.get(f"/api/v1/mailboxes/{body['id']}", headers=admin).get_data(as_text=True)
    text += c.get("/api/v1/mailboxes", headers=admin).get_data(as_text=True)
    assert mailstack.users[ALICE] not in text
    assert not {"password", "password_enc"} & set(body)


def test_app_password_is_sealed_with_aes_gcm_bound_to_its_row(appliance, web, admin, mailstack):
    r = web.test_client().post("/api/v1/mailboxes?check=false", json=payload(mailstack), headers=admin)
    mailbox_id = r.get_json()["id"]
    row = mailboxes_repo.by_id(appliance.db.connection(), mailbox_id)
    secret = mailstack.users[ALICE].encode()
    assert secret not in row["password_enc"] and row["password_enc"][0] == 1 and len(row["password_enc"]) > 28
    appliance.db.checkpoint()
    assert secret not in appliance.config.database_path.read_bytes()
    # a ciphertext moved to another mailbox's row does not open there
    other = web.test_client().post("/api/v1/mailboxes?check=false", json=payload(mailstack, BOB), headers=admin)
    with appliance.db.transaction() as conn:
        mailboxes_repo.set_password(conn, other.get_json()["id"], row["password_enc"])
    with pytest.raises(Exception, match="moved from another row"):
        mailboxes.credentials(appliance.db, appliance.keys, other.get_json()["id"], Actor.system(), "test")


def test_a_rejected_login_is_saved_with_the_reason_and_paused_after_repeats(appliance, web, admin, mailstack):
    c = web.test_client()
    r = c.post("/api/v1/mailboxes", json=payload(mailstack, password="wrong-app-password"), headers=admin)
    body = r.get_json()
    assert r.status_code == 201 and body["status"] == "error"
    assert body["check"]["smtp"]["code"] == "auth_failed" and body["last_error_code"] == "auth_failed"
    for _ in range(2):
        result = c.post(f"/api/v1/mailboxes/{body['id']}/test", headers=admin).get_json()
        assert result["smtp"]["code"] == "auth_failed"
    paused = c.get(f"/api/v1/mailboxes/{body['id']}", headers=admin).get_json()
    assert paused["status"] == "paused" and "3 failed sign-ins" in paused["status_reason"]
    assert paused["consecutive_failures"] == 3
    # resume refuses while the check fails; fixing the password (blank keeps, new replaces) lets it resume
    assert c.post(f"/api/v1/mailboxes/{body['id']}/resume", headers=admin).status_code == 409
    fixed = c.patch(f"/api/v1/mailboxes/{body['id']}?check=false",
                    json={"password": mailstack.users[ALICE], "display_name": "A"}, headers=admin)
    assert fixed.status_code == 200
    resumed = c.post(f"/api/v1/mailboxes/{body['id']}/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.get_json()["status"] == "active"
    assert resumed.get_json()["consecutive_failures"] == 0


def test_blank_password_on_update_keeps_the_stored_one(appliance, web, admin, mailstack):
    c = web.test_client()
    mailbox_id = c.post("/api/v1/mailboxes?check=false", json=payload(mailstack), headers=admin).get_json()["id"]
    r = c.patch(f"/api/v1/mailboxes/{mailbox_id}", json={"password": "", "daily_limit": 12}, headers=admin)
    assert r.status_code == 200 and r.get_json()["daily_limit"] == 12 and "check" not in r.get_json()
    assert c.post(f"/api/v1/mailboxes/{mailbox_id}/test", headers=admin).get_json()["smtp"]["ok"]


def test_every_person_read_is_audited_and_system_reads_coalesce(appliance, web, admin, mailstack):
    c = web.test_client()
    mailbox_id = c.post("/api/v1/mailboxes?check=false", json=payload(mailstack), headers=admin).get_json()["id"]
    for _ in range(2):
        c.post(f"/api/v1/mailboxes/{mailbox_id}/test", headers=admin)
    person_reads = [r for r in audit_actions(appliance, "credential.read") if r["actor_type"] == "user"]
    assert len(person_reads) == 2 and all(r["target_id"] == str(mailbox_id) for r in person_reads)
    for _ in range(50):
        mailboxes.credentials(appliance.db, appliance.keys, mailbox_id, Actor.system("scheduler"), "send")
    system_reads = [r for r in audit_actions(appliance, "credential.read") if r["actor_type"] == "system"]
    assert len(system_reads) == 1
    assert mailboxes.credential_reads(appliance.db, mailbox_id)[0]["reads"] == 50
    assert {"mailbox.connected", "mailbox.checked"} <= {r["action"] for r in audit_actions(appliance, "mailbox.")}


def test_presets_fill_hosts_and_bad_input_is_listed_per_field(appliance, web, admin):
    c = web.test_client()
    r = c.post("/api/v1/mailboxes?check=false", json={"email": "rep@gmail.com", "provider": "gmail",
                                                      "password": "abcd efgh ijkl mnop"}, headers=admin)
    body = r.get_json()
    assert r.status_code == 201 and (body["smtp_host"], body["smtp_port"], body["smtp_security"]) == \
        ("smtp.gmail.com", 465, "ssl")
    assert body["save_sent_copy"] is False  # Gmail files SMTP-sent mail itself
    bad = c.post("/api/v1/mailboxes", json={"email": "nope", "smtp_host": "bad host\r\n", "smtp_port": 70000,
                                            "smtp_security": "tls", "min_gap_seconds": 600,
                                            "max_gap_seconds": 60, "tls_pin_sha256": "xyz"}, headers=admin)
    fields = bad.get_json()["error"]["details"]["fields"]
    assert bad.status_code == 400
    assert {"email", "smtp_host", "smtp_port", "smtp_security", "max_gap_seconds", "tls_pin_sha256",
            "password", "imap_host"} <= set(fields)


def test_list_filters_and_pagination(appliance, web, admin, mailstack):
    c = web.test_client()
    for i in range(5):
        c.post("/api/v1/mailboxes?check=false", json=payload(mailstack, f"rep{i}@example.test",
                                                             tags=["eu" if i % 2 else "us"]), headers=admin)
    page1 = c.get("/api/v1/mailboxes?limit=2", headers=admin).get_json()
    page2 = c.get(f"/api/v1/mailboxes?limit=2&cursor={page1['next_cursor']}", headers=admin).get_json()
    assert len(page1["items"]) == 2 and page2["items"][0]["id"] > page1["items"][1]["id"]
    assert [m["email"] for m in c.get("/api/v1/mailboxes?tag=eu", headers=admin).get_json()["items"]] == \
        ["rep1@example.test", "rep3@example.test"]
    assert len(c.get("/api/v1/mailboxes?q=rep4", headers=admin).get_json()["items"]) == 1
    assert len(c.get("/api/v1/mailboxes?q=%25", headers=admin).get_json()["items"]) == 0  # LIKE escaped
    assert c.get("/api/v1/mailboxes?status=bogus", headers=admin).status_code == 400


def test_only_admins_manage_mailboxes(appliance, web, mailstack):
    add_user(appliance, "member@x.test", role="member")
    member = login(web.test_client(), "member@x.test").headers(bearer=True)
    c = web.test_client()
    assert c.get("/api/v1/mailboxes", headers=member).status_code == 403
    assert c.post("/api/v1/mailboxes", json=payload(mailstack), headers=member).status_code == 403
    assert c.get("/api/v1/mailboxes").status_code == 401


CSV = """email,name,smtp_host,smtp_port,smtp_security,imap_host,imap_port,imap_security,app_password,tags,daily_limit
alice@example.test,Alice,{h},{sp},starttls,{h},{ip},ssl,{pa},eu;warm,25
broken-address,Bad,{h},{sp},starttls,{h},{ip},ssl,x,,25
bob@example.test,Bob,{h},{sp},starttls,{h},{ip},ssl,wrong-password,,25
carol@other.test,Carol,{h},{sp},starttls,{h},{ip},ssl,{pc},,0
alice@example.test,Again,{h},{sp},starttls,{h},{ip},ssl,{pa},,25
"""


def test_csv_bulk_connect_keeps_good_rows_and_lists_bad_lines(appliance, web, admin, mailstack):
    # the stack's private CA goes in a tls_ca_pem column: a quoted value spanning many lines,
    # so the reported line numbers must count physical lines, not records
    text = CSV.format(h=mailstack.host, sp=mailstack.submission_port, ip=mailstack.imaps_port,
                      pa=mailstack.users[ALICE], pc=mailstack.users["carol@other.test"])
    lines = text.splitlines()
    lines[0] += ",tls_ca_pem"
    lines[1:] = [line + ',"' + mailstack.cafile.read_text() + '"' for line in lines[1:]]
    body = "\n".join(lines) + "\n"
    r = web.test_client().post("/api/v1/mailboxes/import", data=body.encode(), content_type="text/csv",
                               headers=admin)
    result = r.get_json()
    assert r.status_code == 200, result
    pem_lines = mailstack.cafile.read_text().count("\n")
    first_data_line = 2
    record = lambda n: first_data_line + n * (pem_lines + 1)  # noqa: E731
    assert result["imported"] == 2 and result["skipped"] == 3
    assert [e["line"] for e in result["errors"]] == [record(1), record(3), record(4)]
    assert "email" in result["errors"][0]["error"] and "daily_limit" in result["errors"][1]["error"]
    assert "twice" in result["errors"][2]["error"]
    job_id = result["job"]["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = web.test_client().get(f"/api/v1/jobs/{job_id}", headers=admin).get_json()
        if job["status"] == "done":
            break
        time.sleep(0.1)
    assert job["status"] == "done" and job["total"] == 2 and job["done"] + job["failed"] == 2
    states = {m["email"]: m["status"] for m in web.test_client().get("/api/v1/mailboxes", headers=admin).get_json()["items"]}
    assert states == {"alice@example.test": "active", "bob@example.test": "error"}


def test_csv_with_semicolons_and_a_bom_and_a_bad_header(appliance, web, admin):
    c = web.test_client()
    text = "\ufeffEmail;Provider;App Password\nrep@gmail.com;gmail;abcd efgh ijkl mnop\n"
    r = c.post("/api/v1/mailboxes/import?check=false", data=text.encode(), content_type="text/csv", headers=admin)
    assert r.get_json()["imported"] == 1
    bad = c.post("/api/v1/mailboxes/import", data=b"who,what\n1,2\n", content_type="text/csv", headers=admin)
    assert bad.status_code == 422 and "header" in bad.get_json()["error"]["message"]
    wrong_type = c.post("/api/v1/mailboxes/import", json={"a": 1}, headers=admin)
    assert wrong_type.status_code == 415


def test_import_streams_without_reading_everything(appliance, admin):
    from appliance.services import mailbox_import
    rows = list(mailbox_import.read_rows(io.BytesIO(b"email,password\r\na@x.test,pw\r\n\r\nb@x.test,pw2\r\n")))
    assert rows == [(2, {"email": "a@x.test", "password": "pw"}), (4, {"email": "b@x.test", "password": "pw2"})]


def test_mailbox_pages(appliance, web, mailstack):
    add_user(appliance, "admin@x.test", role="admin")
    c = web.test_client()
    s = login(c, "admin@x.test")
    form = {k: str(v) for k, v in payload(mailstack).items() if k not in ("tags", "tls_ca_pem")}
    form.update(csrf_token=s.csrf, provider="custom", tags="eu, warm", tls_mode="ca",
                tls_ca_pem=mailstack.cafile.read_text(), sending_enabled="1")
    r = c.post("/mailboxes/new", data=form)
    assert r.status_code == 302, r.data[:2000]
    detail = c.get(r.headers["Location"])
    assert detail.status_code == 200 and b'id="mailbox-status">active' in detail.data
    assert mailstack.users[ALICE].encode() not in detail.data
    listing = c.get("/mailboxes?tag=eu")
    assert b"alice@example.test" in listing.data
    bad = c.post("/mailboxes/new", data=dict(form, email="bob@example.test", smtp_port="99999"))
    assert bad.status_code == 400 and b"Enter a number from 1 to 65535" in bad.data
    assert b'value="bob@example.test"' in bad.data  # kept what was typed
    upload = c.post("/mailboxes/import", data={"csrf_token": s.csrf, "file": (io.BytesIO(
        b"email,provider,password\nrep@gmail.com,gmail,abcd\nnot-an-email,gmail,x\n"), "boxes.csv")},
        content_type="multipart/form-data")
    assert upload.status_code == 200 and b"<strong>1</strong> mailboxes imported" in upload.data
    assert b"<td>3</td>" in upload.data
    add_user(appliance, "member@x.test", role="member")
    m = web.test_client()
    login(m, "member@x.test")
    assert m.get("/mailboxes").status_code == 403



def test_page_uploads_are_spooled_in_the_data_dir_never_the_system_temp_dir(appliance, web, tmp_path,
                                                                             monkeypatch):
    """Werkzeug spools a large multipart upload to the system temp directory; the app writes
    every uploaded file into <data_dir>/tmp instead and deletes it when the request ends."""
    import tempfile

    import werkzeug.formparser

    from appliance.services import mailbox_import, uploads

    add_user(appliance, "admin@x.test", role="admin")
    c = web.test_client()
    s = login(c, "admin@x.test")
    system_tmp, data_tmp = tmp_path / "system-tmp", appliance.config.data_dir / "tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))  # what tempfile.gettempdir() returns now

    def refuse(*args, **kwargs):
        raise AssertionError("an upload went through the tempfile module")

    for module, name in ((tempfile, "TemporaryFile"), (tempfile, "NamedTemporaryFile"), (tempfile, "mkstemp"),
                         (tempfile, "SpooledTemporaryFile"), (werkzeug.formparser, "SpooledTemporaryFile")):
        monkeypatch.setattr(module, name, refuse)
    spooled = []
    real_import = mailbox_import.import_csv

    def import_csv(*args, **kwargs):
        spooled.extend((p.name, p.stat().st_size) for p in data_tmp.iterdir())
        return real_import(*args, **kwargs)

    monkeypatch.setattr(mailbox_import, "import_csv", import_csv)
    body = b"email,provider,password\r\nrep@gmail.com,gmail,abcd\r\n" + b"\r\n" * 600_000  # > 1 MiB
    assert len(body) > 1024 * 1024
    r = c.post("/mailboxes/import", data={"csrf_token": s.csrf, "file": (io.BytesIO(body), "boxes.csv")},
               content_type="multipart/form-data")
    assert r.status_code == 200 and b"<strong>1</strong> mailboxes imported" in r.data, r.data[:2000]
    assert len(spooled) == 1 and spooled[0][0].startswith(uploads.UPLOAD_PREFIX) and spooled[0][1] == len(body)
    assert list(system_tmp.iterdir()) == [] and tempfile.gettempdir() == str(system_tmp)
    assert list(data_tmp.iterdir()) == []  # deleted when the request ended

def test_delete_and_recent_activity(appliance, web, admin, mailstack):
    c = web.test_client()
    mailbox_id = c.post("/api/v1/mailboxes?check=false", json=payload(mailstack), headers=admin).get_json()["id"]
    c.post(f"/api/v1/mailboxes/{mailbox_id}/pause", headers=admin)
    actions = [a["action"] for a in mailboxes.recent_activity(appliance.db, mailbox_id)]
    assert actions == ["mailbox.paused", "mailbox.connected"]
    assert c.delete(f"/api/v1/mailboxes/{mailbox_id}", headers=admin).status_code == 204
    assert c.get(f"/api/v1/mailboxes/{mailbox_id}", headers=admin).status_code == 404
    assert audit_actions(appliance, "mailbox.deleted")[0]["target_id"] == str(mailbox_id)


def test_interrupted_jobs_are_marked_failed_at_start_up(appliance):
    from appliance.db import jobs_repo
    from appliance.services import jobs
    with appliance.db.transaction() as conn:
        job_id = jobs_repo.create(conn, "mailbox_check", 10, None, "2026-01-01T00:00:00Z")
    assert jobs.fail_interrupted(appliance.db) == 1
    job = jobs.get(appliance.db, job_id)
    assert job["status"] == "failed" and job["result"] == {"error": "interrupted by a restart"}


def test_slow_ramp_caps_the_day(appliance):
    from datetime import date
    box = {"daily_limit": 50, "ramp_start": 5, "ramp_step": 3, "ramp_started_on": "2026-11-01"}
    assert mailboxes.daily_cap(box, date(2026, 11, 1)) == 5
    assert mailboxes.daily_cap(box, date(2026, 11, 4)) == 14
    assert mailboxes.daily_cap(box, date(2027, 1, 1)) == 50
    assert mailboxes.daily_cap(dict(box, ramp_start=None), date(2026, 11, 1)) == 50


def test_mailboxes_in_error_heal_by_themselves(appliance, web, admin, mailstack):
    from appliance.services.maintenance import jobs
    c = web.test_client()
    box = c.post("/api/v1/mailboxes", json=payload(mailstack), headers=admin).get_json()
    with appliance.db.transaction() as conn:  # as after a passing outage
        mailboxes_repo.update(conn, box["id"], {"status": "error", "last_error": "host down"}, "2026-01-01T00:00:00Z")
    job = next(j for j in jobs(appliance) if j.name == "mailboxes.recheck_errors")
    job.run()
    healed = mailboxes.get(appliance.db, box["id"])
    assert healed["status"] == "active" and healed["last_error"] is None


def test_a_ca_bundle_that_is_not_ascii_is_a_field_error(web, admin):
    """Found by the schema run: the TLS library's TypeError for non-ASCII text was a 500."""
    body = {"email": "carol@example.test", "provider": "custom", "smtp_host": "127.0.0.1", "smtp_port": 1,
            "smtp_security": "ssl", "imap_host": "127.0.0.1", "imap_port": 1, "imap_security": "ssl",
            "password": "x", "tls_ca_pem": "-----BEGIN CERTIFICATE-----\nÄÖÜ\n-----END CERTIFICATE-----"}
    r = web.test_client().post("/api/v1/mailboxes?check=false", json=body, headers=admin)
    assert r.status_code == 400
    assert r.get_json()["error"]["details"]["fields"]["tls_ca_pem"] == "This is not a PEM certificate bundle."
