"""The suppression list: values and kinds, exact matching (address, domain, parent domains),
batch lookups, the API with its roles, CSV import and export, audit rows, the page."""

from __future__ import annotations

import csv
import io
import re

import pytest

from appliance.db import audit_repo, suppressions_repo, users_repo
from appliance.services import api_keys, sessions, suppression_files, suppressions
from appliance.services.authz import Principal
from appliance.services.errors import PermissionDenied, ValidationError

from .support.access import add_user, login


# -- helpers --------------------------------------------------------------------------------

def bearer(appliance, role: str) -> dict:
    """A signed-in caller of that role, as a Bearer header (a real session token, no bcrypt)."""
    email = f"{role}@x.test"
    conn = appliance.db.connection()
    user = users_repo.by_email(conn, email) or users_repo.by_id(conn, add_user(appliance, email, role=role))
    token, _ = sessions.issue(appliance.keys.sessions, user, idle_minutes=60, max_hours=1)
    return {"Authorization": f"Bearer {token}"}


def principal(appliance, role: str = "member") -> Principal:
    email = f"svc-{role}@x.test"
    user = users_repo.by_email(appliance.db.connection(), email)
    user_id = user["id"] if user else add_user(appliance, email, role=role)
    return Principal(user_id=user_id, email=email, role=role, via="session")


def audit_rows(appliance, action: str) -> list[dict]:
    return [dict(r) for r in audit_repo.search(appliance.db.connection(), action=action, limit=500)]


def add(appliance, value, reason="manual", source=""):
    entry, _ = suppressions.add(appliance.db, principal(appliance, "admin"),
                                {"value": value, "reason": reason, "source": source})
    return entry


def import_text(client, headers, text: str, query: str = ""):
    return client.post(f"/api/v1/suppressions/import{query}", data=text.encode(), content_type="text/csv",
                       headers=headers)


# -- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("A@B.com", ("a@b.com", "email")),
    ("  Someone+tag@Mail.Example.ORG ", ("someone+tag@mail.example.org", "email")),
    ("mailto:a@b.com", ("a@b.com", "email")),
    ("b.com", ("b.com", "domain")),
    ("@B.com", ("b.com", "domain")),
    ("sub.b.co.uk.", ("sub.b.co.uk", "domain")),
    ("xn--bcher-kva.example", ("xn--bcher-kva.example", "domain")),
])
def test_kind_follows_from_the_value_and_values_are_normalised(text, expected):
    assert suppressions.parse_value(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "b", "a@", "a@b", "a b.com", "1.2.3.4", "*.b.com", "-b.com",
                                  "b..com", "a@@b.com", "bad_host.com", "x" * 250 + ".com", None, 5])
def test_bad_values_are_refused(text):
    with pytest.raises(ValueError):
        suppressions.parse_value(text)


def test_an_explicit_kind_must_agree_with_the_value():
    assert suppressions.parse_value("b.com", "domain") == ("b.com", "domain")
    with pytest.raises(ValueError, match="email address, not a domain"):
        suppressions.parse_value("a@b.com", "domain")
    with pytest.raises(ValueError, match="a domain, not an email"):
        suppressions.parse_value("b.com", "email")
    with pytest.raises(ValueError, match="kind must be"):
        suppressions.parse_value("b.com", "company")


# -- matching ---------------------------------------------------------------------------------

def test_a_domain_covers_itself_and_its_subdomains_but_not_look_alikes(appliance):
    add(appliance, "b.com", reason="complained")
    add(appliance, "x@c.com", reason="unsubscribed")
    conn = appliance.db.connection()
    assert suppressions.suppression_for(conn, "a@b.com")["value"] == "b.com"
    assert suppressions.suppression_for(conn, "A@B.COM")["reason"] == "complained"
    assert suppressions.suppression_for(conn, "a@mail.b.com")["value"] == "b.com"
    assert suppressions.suppression_for(conn, "a@deep.mail.b.com")["value"] == "b.com"
    for free in ("a@notb.com", "a@b.com.evil.test", "a@b.co", "a@bb.com", "b.com@else.test", "x@sub.c.com",
                 "y@c.com", "x@c.co", "", "not-an-address"):
        assert suppressions.suppression_for(conn, free) is None, free
    assert suppressions.suppression_for(conn, " X@C.com ")["value"] == "x@c.com"
    # the most specific entry wins: the address itself before its domain
    add(appliance, "a@b.com", reason="bounced")
    assert suppressions.suppression_for(conn, "a@b.com")["reason"] == "bounced"
    add(appliance, "mail.b.com", reason="manual")
    assert suppressions.suppression_for(conn, "z@mail.b.com")["value"] == "mail.b.com"
    assert suppressions.candidates("a@x.b.com") == ["a@x.b.com", "x.b.com", "b.com"]


def test_batch_lookup_is_exact_and_one_indexed_query(appliance):
    add(appliance, "b.com", reason="complained")
    add(appliance, "a@c.com", reason="bounced")
    add(appliance, "sub.d.com", reason="manual")
    wanted = {"x@b.com": "complained", "y@mail.b.com": "complained", "a@c.com": "bounced",
              "q@sub.d.com": "manual", "q@x.sub.d.com": "manual"}
    free = ["x@notb.com", "b@c.com", "q@d.com", "a@c.com.au", "nobody@else.test"]
    free += [f"user{i}@bulk{i % 97}.test" for i in range(5000)]
    conn = appliance.db.connection()
    statements = []
    conn.set_trace_callback(statements.append)
    try:
        found = suppressions.suppressed_among(conn, list(wanted) + free)
    finally:
        conn.set_trace_callback(None)
    assert found == wanted
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    # the lookup walks the unique index on value, never the whole table
    plan = " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT s.id FROM json_each(?) AS j JOIN suppressions s ON s.value = j.value",
        ('["a@b.com"]',)))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert suppressions.suppressed_among(conn, []) == {}
    # keys come back exactly as given
    assert suppressions.suppressed_among(conn, ["X@B.com"]) == {"X@B.com": "complained"}


def test_other_services_add_inside_their_own_transaction(appliance):
    from appliance.services.audit import Actor
    with appliance.db.transaction() as conn:
        entry, created = suppressions.suppress(conn, Actor.system("sync"), "Gone@Example.test", reason="bounced",
                                               source="bounce from mx.example.test")
        again, created_again = suppressions.suppress(conn, Actor.system("sync"), "gone@example.test",
                                                     reason="complained")
    assert created and not created_again and again["id"] == entry["id"] and again["reason"] == "bounced"
    assert len(audit_rows(appliance, "suppression.added")) == 1
    assert suppressions.is_suppressed(appliance.db.connection(), "gone@example.test")


# -- API --------------------------------------------------------------------------------------

def test_api_crud_with_roles(appliance, web):
    c = web.test_client()
    viewer, member, admin = (bearer(appliance, r) for r in ("viewer", "member", "admin"))
    assert c.get("/api/v1/suppressions").status_code == 401
    assert c.post("/api/v1/suppressions", json={"value": "a@b.com"}, headers=viewer).status_code == 403

    r = c.post("/api/v1/suppressions", json={"value": " A@B.com ", "reason": "unsubscribed",
                                             "source": "reply from A"}, headers=member)
    assert r.status_code == 201, r.get_json()
    entry = r.get_json()
    assert {k: entry[k] for k in ("value", "kind", "reason", "source", "created")} == \
        {"value": "a@b.com", "kind": "email", "reason": "unsubscribed", "source": "reply from A", "created": True}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["created_at"]) and isinstance(entry["id"], int)

    # idempotent: the first row stays, and says so
    again = c.post("/api/v1/suppressions", json={"value": "a@b.COM", "reason": "bounced"}, headers=member)
    assert again.status_code == 200
    assert again.get_json()["id"] == entry["id"] and again.get_json()["reason"] == "unsubscribed"
    assert again.get_json()["created"] is False

    domain = c.post("/api/v1/suppressions", json={"value": "@Rival.example", "kind": "domain"}, headers=member)
    assert domain.status_code == 201 and domain.get_json()["kind"] == "domain"
    assert domain.get_json()["reason"] == "manual" and domain.get_json()["value"] == "rival.example"

    listed = c.get("/api/v1/suppressions", headers=viewer).get_json()
    assert [i["value"] for i in listed["items"]] == ["rival.example", "a@b.com"] and listed["next_cursor"] is None
    assert c.get(f"/api/v1/suppressions/{entry['id']}", headers=viewer).get_json()["value"] == "a@b.com"

    assert c.delete(f"/api/v1/suppressions/{entry['id']}", headers=member).status_code == 403
    assert c.delete(f"/api/v1/suppressions/{entry['id']}?note=asked+by+legal", headers=admin).status_code == 204
    assert c.get(f"/api/v1/suppressions/{entry['id']}", headers=viewer).status_code == 404
    assert c.delete(f"/api/v1/suppressions/{entry['id']}", headers=admin).status_code == 404
    assert [i["value"] for i in c.get("/api/v1/suppressions", headers=viewer).get_json()["items"]] == \
        ["rival.example"]


def test_api_key_scopes(appliance, web):
    api_keys.cache.clear()
    admin = principal(appliance, "admin")
    read_key = api_keys.create(appliance.db, admin, name="reader", scopes=["read"], cost=12)["key"]
    write_key = api_keys.create(appliance.db, admin, name="writer", scopes=["read", "write"], cost=12)["key"]
    c = web.test_client()
    as_key = lambda key: {"Authorization": f"Bearer {key}"}  # noqa: E731
    assert c.get("/api/v1/suppressions", headers=as_key(read_key)).status_code == 200
    assert c.post("/api/v1/suppressions", json={"value": "a@b.com"}, headers=as_key(read_key)).status_code == 403
    created = c.post("/api/v1/suppressions", json={"value": "a@b.com"}, headers=as_key(write_key))
    assert created.status_code == 201
    # removing needs the admin scope even on an admin's key
    r = c.delete(f"/api/v1/suppressions/{created.get_json()['id']}", headers=as_key(write_key))
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    api_keys.cache.clear()


def test_validation_errors_name_the_field(appliance, web):
    c, member = web.test_client(), bearer(appliance, "member")
    cases = [({"value": "not an address"}, "value"), ({"value": "a@b.com", "reason": "spam"}, "reason"),
             ({"value": "a@b.com", "kind": "domain"}, "value"), ({"value": "b.com", "kind": "thing"}, "kind"),
             ({}, "value"), ({"value": 42}, "value"), ({"value": "a@b.com", "source": "x" * 201}, "source")]
    for body, name in cases:
        r = c.post("/api/v1/suppressions", json=body, headers=member)
        assert r.status_code == 400, body
        assert name in r.get_json()["error"]["details"]["fields"], (body, r.get_json())
    assert c.post("/api/v1/suppressions", data="value=a@b.com", headers=member).status_code == 415
    assert suppressions.overview(appliance.db)["total"] == 0


def test_list_filters_and_cursor_pagination(appliance, web):
    for value, reason in [("a@b.com", "bounced"), ("c.com", "manual"), ("d@e.com", "unsubscribed"),
                          ("f_g@h.com", "bounced"), ("fxg@h.com", "bounced")]:
        add(appliance, value, reason=reason, source=f"src-{value}")
    c, viewer = web.test_client(), bearer(appliance, "viewer")
    get = lambda q: c.get(f"/api/v1/suppressions{q}", headers=viewer).get_json()  # noqa: E731
    page1 = get("?limit=2")
    page2 = get(f"?limit=2&cursor={page1['next_cursor']}")
    page3 = get(f"?limit=2&cursor={page2['next_cursor']}")
    values = [i["value"] for p in (page1, page2, page3) for i in p["items"]]
    assert values == ["fxg@h.com", "f_g@h.com", "d@e.com", "c.com", "a@b.com"] and page3["next_cursor"] is None
    assert [i["value"] for i in get("?kind=domain")["items"]] == ["c.com"]
    assert [i["value"] for i in get("?reason=bounced&kind=email")["items"]] == ["fxg@h.com", "f_g@h.com", "a@b.com"]
    assert [i["value"] for i in get("?q=F_G")["items"]] == ["f_g@h.com"]  # _ is literal, not a wildcard
    assert [i["value"] for i in get("?q=src-c.com")["items"]] == ["c.com"]  # the source is searched too
    assert get("?q=%25")["items"] == []
    for bad in ("?kind=person", "?reason=spam", "?limit=0", "?cursor=x"):
        assert c.get(f"/api/v1/suppressions{bad}", headers=viewer).status_code == 400, bad


def test_check_endpoint_says_which_entry_matches(appliance, web):
    add(appliance, "b.com", reason="complained")
    c, viewer = web.test_client(), bearer(appliance, "viewer")
    hit = c.get("/api/v1/suppressions/check?email=Someone@Mail.B.com", headers=viewer).get_json()
    assert hit["suppressed"] and hit["email"] == "someone@mail.b.com" and hit["match"]["value"] == "b.com"
    miss = c.get("/api/v1/suppressions/check?email=someone@notb.com", headers=viewer).get_json()
    assert miss == {"email": "someone@notb.com", "suppressed": False, "match": None}
    assert c.get("/api/v1/suppressions/check?email=nope", headers=viewer).status_code == 400


def test_every_change_is_audited_and_a_repeat_add_is_not(appliance, web):
    c, member, admin = web.test_client(), bearer(appliance, "member"), bearer(appliance, "admin")
    entry = c.post("/api/v1/suppressions", json={"value": "a@b.com", "reason": "unsubscribed",
                                                 "source": "reply"}, headers=member).get_json()
    c.post("/api/v1/suppressions", json={"value": "a@b.com"}, headers=member)
    added = audit_rows(appliance, "suppression.added")
    assert len(added) == 1 and added[0]["actor_label"] == "member@x.test"
    assert added[0]["target_type"] == "suppression" and added[0]["target_id"] == str(entry["id"])
    assert '"reason":"unsubscribed"' in added[0]["metadata"] and '"value":"a@b.com"' in added[0]["metadata"]
    c.delete(f"/api/v1/suppressions/{entry['id']}", json={"note": "entered by mistake"}, headers=admin)
    removed = audit_rows(appliance, "suppression.removed")
    assert len(removed) == 1 and removed[0]["actor_label"] == "admin@x.test"
    for fragment in ('"reason":"unsubscribed"', '"note":"entered by mistake"', '"value":"a@b.com"',
                     '"source":"reply"'):
        assert fragment in removed[0]["metadata"]
    import_text(c, member, "value\nx@y.com\nbad\n")
    imported = audit_rows(appliance, "suppression.imported")
    assert len(imported) == 1 and '"imported":1' in imported[0]["metadata"] and '"skipped":1' in imported[0]["metadata"]


def test_service_checks_roles_too(appliance):
    with pytest.raises(PermissionDenied):
        suppressions.add(appliance.db, principal(appliance, "viewer"), {"value": "a@b.com"})
    entry = add(appliance, "a@b.com")
    with pytest.raises(PermissionDenied):
        suppressions.delete(appliance.db, principal(appliance, "member"), entry["id"])
    with pytest.raises(PermissionDenied):
        suppression_files.import_csv(appliance.db, principal(appliance, "viewer"), io.BytesIO(b"a@b.com\n"))
    with pytest.raises(ValidationError):
        suppressions.delete(appliance.db, principal(appliance, "admin"), entry["id"], note="x" * 501)


# -- CSV import ---------------------------------------------------------------------------------

IMPORT = (
    "Email,Reason,Source,Notes\n"              # 1  (header; unknown columns are ignored)
    "one@example.test,unsubscribed,form,hi\n"  # 2
    "not-an-address,bounced,,\n"               # 3  bad address
    "two@example.test,spam,,\n"                # 4  bad reason
    "\n"                                       # 5  blank
    "Whole.Example,,,\n"                       # 6  domain, default reason
    '"three@example.test",complained,"a\n'     # 7  quoted source over two lines
    'b",\n'                                    # 8
    "ONE@example.test,bounced,,\n"             # 9  already added at line 2
    ",bounced,,\n"                             # 10 no value
    "four@example.test,,,\n"                   # 11
)


def test_csv_import_keeps_good_rows_and_lists_bad_ones_by_line(appliance, web):
    c, member = web.test_client(), bearer(appliance, "member")
    add(appliance, "four@example.test", reason="bounced")
    r = import_text(c, member, IMPORT, "?reason=manual&source=crm")
    body = r.get_json()
    assert r.status_code == 200, body
    assert (body["imported"], body["already_suppressed"], body["skipped"]) == (3, 2, 3)
    assert [e["line"] for e in body["errors"]] == [3, 4, 10]
    assert "not-an-address" in body["errors"][0]["error"] and "spam" in body["errors"][1]["error"]
    assert body["errors_truncated"] is False
    conn = appliance.db.connection()
    assert dict(suppressions.suppression_for(conn, "one@example.test"), id=0, created_at="", created_by=None) == \
        {"id": 0, "value": "one@example.test", "kind": "email", "reason": "unsubscribed", "source": "form",
         "created_by": None, "created_at": ""}
    assert suppressions.suppression_for(conn, "x@whole.example")["reason"] == "manual"
    assert suppressions.suppression_for(conn, "x@whole.example")["source"] == "crm"
    assert suppressions.suppression_for(conn, "three@example.test")["source"] == "a b"
    assert suppressions.suppression_for(conn, "four@example.test")["reason"] == "bounced"  # first entry kept


def test_header_less_and_other_shapes(appliance, web):
    c, member = web.test_client(), bearer(appliance, "member")
    plain = import_text(c, member, "\ufeffa@one.test\r\nnot valid\r\nb@one.test\r\n\r\ntwo.test\r\n").get_json()
    assert (plain["imported"], plain["skipped"]) == (3, 1) and plain["errors"][0]["line"] == 2
    first_bad = import_text(c, member, "bad@\nc@one.test\n").get_json()
    assert first_bad["errors"][0]["line"] == 1 and first_bad["imported"] == 1
    worded = import_text(c, member, "Unsubscribes\nd@one.test\n").get_json()
    assert worded["imported"] == 1 and worded["skipped"] == 0
    semi = import_text(c, member, "domain;reason\nthree.test;complained\n").get_json()
    assert semi["imported"] == 1
    assert suppressions.suppression_for(appliance.db.connection(), "x@three.test")["reason"] == "complained"
    tabbed = import_text(c, member, "value\tkind\nfour.test\tdomain\ne@f.test\tdomain\n").get_json()
    assert tabbed["imported"] == 1 and tabbed["errors"][0]["line"] == 3
    refused = import_text(c, member, "name,company\nAnn,Acme\n")
    assert refused.status_code == 422 and "header" in refused.get_json()["error"]["message"]
    assert import_text(c, member, "").status_code == 422
    assert import_text(c, member, "a@b.com\n", "?reason=spam").status_code == 400
    assert c.post("/api/v1/suppressions/import", json={"value": "a@b.com"}, headers=member).status_code == 415
    assert c.post("/api/v1/suppressions/import", data=b"a@b.com\n", content_type="text/csv",
                  headers=bearer(appliance, "viewer")).status_code == 403


def test_import_reads_a_stream_in_batches(appliance, monkeypatch):
    monkeypatch.setattr(suppression_files, "IMPORT_BATCH", 7)
    monkeypatch.setattr(suppression_files, "MAX_LISTED_ERRORS", 5)
    lines = ["value,reason"] + [f"u{i}@big.test,bounced" if i % 10 else f"bad{i},bounced" for i in range(1, 101)]
    result = suppression_files.import_csv(appliance.db, principal(appliance), io.BytesIO("\n".join(lines).encode()))
    assert result["imported"] == 90 and result["skipped"] == 10
    assert [e["line"] for e in result["errors"]] == [11, 21, 31, 41, 51] and result["errors_truncated"]
    assert suppressions.overview(appliance.db) == {"total": 90, "by_kind": {"email": 90},
                                                   "by_reason": {"bounced": 90}}


# -- CSV export ---------------------------------------------------------------------------------

def test_export_escapes_formulas_and_reimports_unchanged(appliance, web):
    add(appliance, "a@b.com", reason="unsubscribed", source="=HYPERLINK(\"http://evil.test\",\"x\")")
    add(appliance, "-dash@b.com", reason="bounced", source="@SUM(1+1)")
    add(appliance, "c.com", reason="manual", source="plain")
    c, viewer = web.test_client(), bearer(appliance, "viewer")
    r = c.get("/api/v1/suppressions/export", headers=viewer)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert rows[0] == ["value", "kind", "reason", "source", "created_at"]
    by_value = {row[0]: row for row in rows[1:]}
    assert by_value["a@b.com"][3] == "'=HYPERLINK(\"http://evil.test\",\"x\")"
    assert by_value["'-dash@b.com"][3] == "'@SUM(1+1)"
    assert by_value["c.com"][1:4] == ["domain", "manual", "plain"]
    for row in rows[1:]:
        assert all(not cell or cell[0] not in "=+-@\t\r" for cell in row), row
    filtered = list(csv.reader(io.StringIO(
        c.get("/api/v1/suppressions/export?kind=domain", headers=viewer).get_data(as_text=True))))
    assert [row[0] for row in filtered[1:]] == ["c.com"]
    assert len(audit_rows(appliance, "suppression.exported")) == 2
    # the export imports back as the same entries (the escaping quote is undone)
    again = import_text(c, bearer(appliance, "member"), r.get_data(as_text=True)).get_json()
    assert again == {"imported": 0, "already_suppressed": 3, "skipped": 0, "errors": [], "errors_truncated": False}
    suppressions_repo_values = [s["value"] for s in suppressions.search(appliance.db, limit=10)]
    assert sorted(suppressions_repo_values) == ["-dash@b.com", "a@b.com", "c.com"]


def test_repository_keeps_the_first_row(appliance):
    with appliance.db.transaction() as conn:
        first = suppressions_repo.insert_if_absent(conn, value="a@b.com", kind="email", reason="bounced", source="",
                                                   created_by=None, now="2026-01-01T00:00:00Z")
        second = suppressions_repo.insert_if_absent(conn, value="a@b.com", kind="email", reason="manual",
                                                    source="", created_by=None, now="2026-01-02T00:00:00Z")
        assert first and second is None
        assert suppressions_repo.insert_many_if_absent(conn, [], None, "2026-01-02T00:00:00Z") == 0
    assert suppressions_repo.by_value(appliance.db.connection(), "a@b.com")["reason"] == "bounced"


# -- the page -----------------------------------------------------------------------------------

def csrf_of(html: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', html).group(1).decode()


def test_page_lists_filters_and_adds_with_errors_next_to_fields(appliance, web):
    add(appliance, "b.com", reason="complained")
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    s = login(c, "member@x.test")
    page = c.get("/suppressions")
    assert page.status_code == 200 and b"Suppression list" in page.data and b"b.com" in page.data
    assert b'id="add-form"' in page.data and b'id="import-form"' in page.data
    assert b"Remove" not in page.data  # members do not remove
    assert b'href="/suppressions"' in page.data  # the nav link

    bad = c.post("/suppressions", data={"csrf_token": s.csrf, "value": "nope@", "reason": "manual",
                                        "source": "typed by hand"})
    assert bad.status_code == 400
    assert re.search(rb'id="f-value"[^>]*value="nope@"', bad.data)  # kept what was typed
    assert b'id="e-value"' in bad.data and b"not a valid email address" in bad.data
    assert b'value="typed by hand"' in bad.data

    ok = c.post("/suppressions", data={"csrf_token": s.csrf, "value": "New@Person.test", "reason": "unsubscribed"})
    assert ok.status_code == 302
    after = c.get(ok.headers["Location"])
    assert b"new@person.test is now on the suppression list" in after.data
    repeat = c.post("/suppressions", data={"csrf_token": s.csrf, "value": "new@person.test", "reason": "manual"},
                    follow_redirects=True)
    assert b"already on the suppression list (unsubscribed)" in repeat.data

    lookup = c.get("/suppressions?q=someone@mail.b.com")
    assert b'id="suppression-lookup"' in lookup.data and b"by the domain entry <strong>b.com</strong>" in lookup.data
    assert b"No entries match" in lookup.data
    assert b"is not suppressed" in c.get("/suppressions?q=someone@notb.com").data
    assert c.get("/suppressions?kind=person").status_code == 400
    domains = c.get("/suppressions?kind=domain")
    assert b"b.com" in domains.data and b"new@person.test" not in domains.data
    assert b"/api/v1/suppressions/export?kind=domain" in domains.data


def test_page_upload_and_pagination(appliance, web, monkeypatch):
    from webui.blueprints import ui_suppressions
    monkeypatch.setattr(ui_suppressions, "PAGE", 2)
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    s = login(c, "member@x.test")
    upload = c.post("/suppressions/import", data={
        "csrf_token": s.csrf, "reason": "bounced", "source": "",
        "file": (io.BytesIO(b"a@one.test\nbroken\nb@one.test\nc@one.test\n"), "bounces.csv")},
        content_type="multipart/form-data")
    assert upload.status_code == 200
    assert b"<strong>3</strong> added" in upload.data and b"<td>2</td>" in upload.data
    entry = suppressions.suppression_for(appliance.db.connection(), "a@one.test")
    assert entry["reason"] == "bounced" and entry["source"] == "bounces.csv"
    missing = c.post("/suppressions/import", data={"csrf_token": s.csrf, "reason": "bounced"},
                     content_type="multipart/form-data")
    assert missing.status_code == 400 and b'id="e-file"' in missing.data
    first = c.get("/suppressions")
    assert b"c@one.test" in first.data and b"a@one.test" not in first.data
    older = re.search(rb'href="([^"]+)" id="older-page"', first.data).group(1).decode().replace("&amp;", "&")
    second = c.get(older)
    assert b"a@one.test" in second.data and b'id="older-page"' not in second.data


def test_page_removal_is_for_admins_with_a_confirmation(appliance, web):
    entry = add(appliance, "a@b.com", reason="unsubscribed")
    add_user(appliance, "admin@x.test", role="admin")
    add_user(appliance, "viewer@x.test", role="viewer")
    c = web.test_client()
    s = login(c, "admin@x.test")
    listing = c.get("/suppressions")
    assert b"Remove" in listing.data
    confirm = c.get(f"/suppressions?remove={entry['id']}")
    assert b'id="remove-confirm"' in confirm.data and b"asked to unsubscribe" in confirm.data
    refused = c.post(f"/suppressions/{entry['id']}/delete", data={"note": "no token"})
    assert refused.status_code == 400 and b"CSRF" in refused.data
    assert suppressions.overview(appliance.db)["total"] == 1
    done = c.post(f"/suppressions/{entry['id']}/delete", data={"csrf_token": s.csrf, "note": "typo"},
                  follow_redirects=True)
    assert done.status_code == 200 and b"a@b.com was removed" in done.data
    assert '"note":"typo"' in audit_rows(appliance, "suppression.removed")[0]["metadata"]

    v = web.test_client()
    vs = login(v, "viewer@x.test")
    page = v.get("/suppressions")
    assert page.status_code == 200 and b'id="add-form"' not in page.data and b"Remove" not in page.data
    assert b'href="/suppressions"' in page.data  # every signed-in user has the nav link
    assert v.post("/suppressions", data={"csrf_token": vs.csrf, "value": "x@y.test"}).status_code == 403
    assert v.post("/suppressions/1/delete", data={"csrf_token": vs.csrf}).status_code == 403
    assert web.test_client().get("/suppressions").status_code == 302  # signed out: to the sign-in page


def test_forms_refuse_a_post_without_the_csrf_token(appliance, web):
    add_user(appliance, "owner@x.test", role="owner")
    c = web.test_client()
    login(c, "owner@x.test")
    for url, data in [("/suppressions", {"value": "a@b.com", "reason": "manual"}),
                      ("/suppressions/import", {"file": (io.BytesIO(b"a@b.com\n"), "x.csv")}),
                      ("/suppressions/1/delete", {})]:
        r = c.post(url, data=data, content_type="multipart/form-data" if "file" in data else None)
        assert r.status_code == 400 and b"CSRF check failed" in r.data, url
    assert suppressions.overview(appliance.db)["total"] == 0
