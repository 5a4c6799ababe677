"""Leads: CRUD and roles over the API, field validation, CSV import (line numbers, duplicates,
encodings, delimiters, custom columns), export with formula escaping, the pages and the import
flow with its temporary upload file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.db import audit_repo
from appliance.services import api_keys, lead_import, leads
from appliance.services import uploads as upload_store
from appliance.services.authz import Principal

from .support.access import add_user, login


@pytest.fixture
def member(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    return login(web.test_client(), "member@x.test").headers(bearer=True)


@pytest.fixture
def viewer(appliance, web):
    add_user(appliance, "viewer@x.test", role="viewer")
    return login(web.test_client(), "viewer@x.test").headers(bearer=True)


def principal(appliance, role="member") -> Principal:
    email = f"p-{role}@x.test"
    return Principal(add_user(appliance, email, role=role), email, role, "session")


def post_csv(client, headers, body, query="", content_type="text/csv"):
    data = body if isinstance(body, bytes) else body.encode()
    return client.post(f"/api/v1/leads/import{query}", data=data, content_type=content_type, headers=headers)


def imported(client, headers, body, query=""):
    r = post_csv(client, headers, body, query)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def all_leads(client, headers, **filters):
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return {lead["email"]: lead for lead in client.get(f"/api/v1/leads?limit=500&{query}",
                                                       headers=headers).get_json()["items"]}


def audit_rows(appliance, action):
    return [dict(r, metadata=json.loads(r["metadata"]))
            for r in audit_repo.search(appliance.db.connection(), action=action, limit=500)]


# -- API: CRUD, roles ------------------------------------------------------------------------

def test_crud_with_roles(appliance, web, member, viewer):
    c = web.test_client()
    body = {"email": "  Jane.Doe@Example.COM ", "first_name": "Jane", "last_name": "Doe", "company": "Acme",
            "title": "CTO", "phone": "+49 30 1234567", "website": "acme.example", "timezone": "europe/berlin",
            "status": "Meeting Booked", "consent": "implied_business", "source": "fair", "tags": ["EU", "vip"],
            "custom": {"LinkedIn URL": "https://li.example/jane", "Deal size": 12000}}
    assert c.post("/api/v1/leads", json=body, headers=viewer).status_code == 403
    assert c.get("/api/v1/leads").status_code == 401
    r = c.post("/api/v1/leads", json=body, headers=member)
    assert r.status_code == 201, r.get_json()
    lead = r.get_json()
    assert lead["email"] == "jane.doe@example.com" and lead["timezone"] == "Europe/Berlin"
    assert lead["status"] == "meeting_booked" and lead["tags"] == ["eu", "vip"]
    assert lead["custom"] == {"linkedin_url": "https://li.example/jane", "deal_size": "12000"}
    assert c.get(f"/api/v1/leads/{lead['id']}", headers=viewer).get_json() == lead

    again = c.post("/api/v1/leads", json={"email": "JANE.DOE@example.com"}, headers=member)
    assert again.status_code == 409 and again.get_json()["error"]["details"]["id"] == lead["id"]

    assert c.patch(f"/api/v1/leads/{lead['id']}", json={"title": "CEO"}, headers=viewer).status_code == 403
    patched = c.patch(f"/api/v1/leads/{lead['id']}", headers=member, json={
        "title": "CEO", "phone": "", "tags": ["us"], "custom": {"deal_size": None, "Region": "DACH"}}).get_json()
    assert patched["title"] == "CEO" and patched["phone"] == "" and patched["tags"] == ["us"]
    assert patched["custom"] == {"linkedin_url": "https://li.example/jane", "region": "DACH"}
    assert patched["first_name"] == "Jane" and patched["updated_at"] >= lead["updated_at"]
    # a client sending the whole object back is fine (read-only fields are ignored)
    assert c.patch(f"/api/v1/leads/{lead['id']}", json=patched, headers=member).status_code == 200

    assert c.delete(f"/api/v1/leads/{lead['id']}", headers=viewer).status_code == 403
    assert c.delete(f"/api/v1/leads/{lead['id']}", headers=member).status_code == 204
    assert c.get(f"/api/v1/leads/{lead['id']}", headers=viewer).status_code == 404
    assert c.delete(f"/api/v1/leads/{lead['id']}", headers=member).status_code == 404
    deleted = audit_rows(appliance, "lead.deleted")
    assert len(deleted) == 1 and deleted[0]["metadata"] == {"email": "jane.doe@example.com"}
    assert deleted[0]["actor_label"] == "member@x.test"


def test_api_key_scopes(appliance, web):
    owner = principal(appliance, "member")
    read_only = api_keys.create(appliance.db, owner, name="reader", scopes=["read"], cost=12)["key"]
    c = web.test_client()
    auth = {"Authorization": f"Bearer {read_only}"}
    assert c.get("/api/v1/leads", headers=auth).status_code == 200
    r = c.post("/api/v1/leads", json={"email": "a@b.test"}, headers=auth)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    assert post_csv(c, auth, "email\na@b.test\n").status_code == 403


def test_validation_errors_per_field(appliance, web, member):
    c = web.test_client()
    bad = {"email": "Jane <jane@example.com>", "first_name": "x" * 201, "phone": "call me",
           "website": "javascript:alert(1)", "timezone": "Mars/Olympus", "status": "hot", "consent": "maybe",
           "tags": ["ok", "no<tag>"], "custom": {"email": "x"}, "favourite_colour": "blue", "company": "A\nB"}
    r = c.post("/api/v1/leads", json=bad, headers=member)
    assert r.status_code == 400
    fields = r.get_json()["error"]["details"]["fields"]
    assert set(fields) == {"email", "first_name", "phone", "website", "timezone", "status", "consent", "tags",
                           "custom", "favourite_colour", "company"}
    assert "display name" in fields["email"] and "Europe/Berlin" in fields["timezone"]
    assert "custom" in fields["favourite_colour"] and "lead field" in fields["custom"]
    for email, message in (("a@b.test\r\nBcc: x@y.test", "Line breaks"), ("", "required"), ("no-at-sign", "valid"),
                           ("a@b", "valid")):
        r = c.post("/api/v1/leads", json={"email": email}, headers=member)
        assert message in r.get_json()["error"]["details"]["fields"]["email"], email
    missing = c.post("/api/v1/leads", json={"first_name": "No Address"}, headers=member)
    assert missing.get_json()["error"]["details"]["fields"] == {"email": "This field is required."}
    assert c.post("/api/v1/leads", json=["a@b.test"], headers=member).status_code == 400
    assert c.post("/api/v1/leads", data="email=a@b.test", headers=member,
                  content_type="application/x-www-form-urlencoded").status_code == 415
    ok = c.post("/api/v1/leads", headers=member, json={"email": "ok@b.test", "website": "https://b.test/about",
                                                        "phone": "+1 (555) 123-4567 ext. 89", "timezone": "UTC"})
    assert ok.status_code == 201, ok.get_json()
    lead_id = ok.get_json()["id"]
    cleared = c.patch(f"/api/v1/leads/{lead_id}", json={"status": "", "email": None}, headers=member)
    assert set(cleared.get_json()["error"]["details"]["fields"]) == {"status", "email"}
    idn = c.post("/api/v1/leads", json={"email": "Info@Müller.example"}, headers=member).get_json()
    assert idn["email"] == "info@xn--mller-kva.example"


def test_list_filters_search_and_cursor_pages(appliance, web, member, viewer):
    c = web.test_client()
    people = [("ann@alpha.test", "Ann", "Archer", "Alpha GmbH", ["eu"], "new"),
              ("bob@beta.test", "Bob", "Baker", "Beta Inc", ["us"], "contacted"),
              ("cat@alpha.test", "Cat", "Cooper", "Alpha GmbH", ["eu", "vip"], "replied"),
              ("dan@delta.test", "Dan", "100%_Done", "Delta", [], "new"),
              ("eve@beta.test", "Eve", "Evans", "Beta Inc", ["us"], "won")]
    ids = {}
    for email, first, last, company, tags, status in people:
        r = c.post("/api/v1/leads", headers=member, json={"email": email, "first_name": first, "last_name": last,
                                                          "company": company, "tags": tags, "status": status})
        ids[email] = r.get_json()["id"]
    page1 = c.get("/api/v1/leads?limit=2", headers=viewer).get_json()
    assert [x["email"] for x in page1["items"]] == ["eve@beta.test", "dan@delta.test"]  # newest first
    page2 = c.get(f"/api/v1/leads?limit=2&cursor={page1['next_cursor']}", headers=viewer).get_json()
    page3 = c.get(f"/api/v1/leads?limit=2&cursor={page2['next_cursor']}", headers=viewer).get_json()
    assert [x["email"] for x in page2["items"] + page3["items"]] == ["cat@alpha.test", "bob@beta.test",
                                                                   "ann@alpha.test"]
    assert page3["next_cursor"] is None
    assert list(all_leads(c, viewer, tag="EU")) == ["cat@alpha.test", "ann@alpha.test"]
    tagged = c.get(f"/api/v1/leads?tag=us&limit=1&cursor={ids['eve@beta.test']}", headers=viewer).get_json()
    assert [x["email"] for x in tagged["items"]] == ["bob@beta.test"]
    assert list(all_leads(c, viewer, status="new")) == ["dan@delta.test", "ann@alpha.test"]
    assert list(all_leads(c, viewer, status="new", tag="eu")) == ["ann@alpha.test"]
    assert list(all_leads(c, viewer, q="alpha")) == ["cat@alpha.test", "ann@alpha.test"]
    assert list(all_leads(c, viewer, q="@beta.test")) == ["eve@beta.test", "bob@beta.test"]
    assert list(all_leads(c, viewer, q="bob@")) == ["bob@beta.test"]
    assert list(all_leads(c, viewer, q="Cat%20Cooper")) == ["cat@alpha.test"]
    assert list(all_leads(c, viewer, q="beta%20inc")) == ["eve@beta.test", "bob@beta.test"]
    assert list(all_leads(c, viewer, q="100%25_")) == ["dan@delta.test"]
    assert list(all_leads(c, viewer, q="%25")) == ["dan@delta.test"]  # % is matched literally
    assert list(all_leads(c, viewer, q="_")) == ["dan@delta.test"]
    bad = c.get("/api/v1/leads?status=hot", headers=viewer)
    assert bad.status_code == 400 and "status" in bad.get_json()["error"]["details"]["fields"]
    assert c.get("/api/v1/leads?limit=501", headers=viewer).status_code == 400
    assert c.get("/api/v1/leads").status_code == 401
    overview = leads.overview(appliance.db)
    assert overview["total"] == 5 and overview["by_status"]["new"] == 2 and overview["tags"] == ["eu", "us", "vip"]


def test_status_and_bulk_tags_through_the_service(appliance):
    p = principal(appliance)
    a = leads.create(appliance.db, p, {"email": "a@x.test"})
    b = leads.create(appliance.db, p, {"email": "b@x.test", "tags": ["old"]})
    assert leads.set_status(appliance.db, None, a["id"], "replied")["status"] == "replied"
    assert leads.add_tags(appliance.db, p, [a["id"], b["id"], 999], "Webinar, old") == 2
    assert leads.get(appliance.db, b["id"])["tags"] == ["old", "webinar"]
    leads.remove_tags(appliance.db, p, [b["id"]], ["old"])
    assert leads.get(appliance.db, b["id"])["tags"] == ["webinar"]
    viewer = principal(appliance, "viewer")
    with pytest.raises(Exception, match="member role"):
        leads.set_status(appliance.db, viewer, a["id"], "won")


# -- CSV import ------------------------------------------------------------------------------

def test_import_keeps_good_rows_and_reports_bad_lines(appliance, web, member):
    text = ("email,first_name,last_name,company,notes,phone\r\n"      # line 1
            "ann@x.test,Ann,Archer,Acme,\"first line\r\nsecond line\r\nthird\",+1 555 0100\r\n"  # 2-4
            "not-an-address,Bad,Row,Acme,,\r\n"                          # 5
            "\r\n"                                                        # 6 (blank)
            "bob@x.test,Bob,,\"Beta, Inc\",\"a \"\"quoted\"\" note\",\r\n"  # 7
            "cat@x.test,Cat,,Gamma,,not a phone\r\n"                     # 8
            "dan@x.test,Dan,,Delta,,,,extra value\r\n"                   # 9
            "Eve <eve@x.test>,Eve,,,,\r\n"                               # 10
            "fay@x.test,Fay\r\n")                                        # 11 (short rows are fine)
    result = imported(web.test_client(), member, text)
    assert (result["imported"], result["updated"], result["skipped"], result["invalid"]) == (3, 0, 0, 4)
    assert [e["line"] for e in result["errors"]] == [5, 8, 9, 10]
    messages = [e["error"] for e in result["errors"]]
    assert messages[0].startswith("email:") and messages[1].startswith("phone:")
    assert "8 values but the header names 6 columns" in messages[2] and "display name" in messages[3]
    assert result["rows"] == 7 and result["encoding"] == "utf-8" and result["delimiter"] == ","
    found = all_leads(web.test_client(), member)
    assert found["ann@x.test"]["custom"] == {"notes": "first line\nsecond line\nthird"}
    assert found["bob@x.test"]["company"] == "Beta, Inc" and found["bob@x.test"]["custom"]["notes"] == 'a "quoted" note'
    assert found["fay@x.test"]["first_name"] == "Fay"
    entries = audit_rows(appliance, "lead.imported")
    assert len(entries) == 1
    meta = entries[0]["metadata"]
    assert (meta["imported"], meta["invalid"], meta["rows"], meta["complete"]) == (3, 4, 7, True)
    assert entries[0]["actor_label"] == "member@x.test"


def test_duplicates_are_skipped_or_merged(appliance, web, member):
    c = web.test_client()
    c.post("/api/v1/leads", headers=member, json={"email": "ann@x.test", "first_name": "Ann", "company": "Old Co",
                                                  "phone": "+1 555 0100", "source": "manual", "tags": ["vip"],
                                                  "custom": {"region": "EU"}})
    text = ("email,first_name,company,phone,tags,seniority\n"
            "ANN@x.test,Annie,New Co,,prospect,senior\n"
            "new@x.test,Neo,,,,\n")
    skipped = imported(c, member, text, "?mode=skip&tag=fair-2024&source=fair")
    assert (skipped["imported"], skipped["updated"], skipped["skipped"]) == (1, 0, 1)
    found = all_leads(c, member)
    assert found["ann@x.test"]["first_name"] == "Ann" and found["ann@x.test"]["tags"] == ["vip"]
    assert found["new@x.test"]["tags"] == ["fair-2024"] and found["new@x.test"]["source"] == "fair"

    merged = imported(c, member, text, "?mode=merge&tag=fair-2024&source=fair")
    assert (merged["imported"], merged["updated"], merged["skipped"]) == (0, 2, 0)
    ann = all_leads(c, member)["ann@x.test"]
    assert (ann["first_name"], ann["company"], ann["phone"]) == ("Annie", "New Co", "+1 555 0100")  # blank kept
    assert ann["source"] == "manual"  # ?source= only fills an empty source
    assert ann["tags"] == ["fair-2024", "prospect", "vip"]
    assert ann["custom"] == {"region": "EU", "seniority": "senior"}
    bad_mode = post_csv(c, member, text, "?mode=overwrite")
    assert bad_mode.status_code == 400 and "mode" in bad_mode.get_json()["error"]["details"]["fields"]


def test_a_merge_never_revives_an_unsubscribed_or_bounced_lead(appliance, web, member):
    c = web.test_client()
    for email, status in (("gone@x.test", "unsubscribed"), ("dead@x.test", "bounced"), ("warm@x.test", "contacted")):
        c.post("/api/v1/leads", json={"email": email, "status": status}, headers=member)
    imported(c, member, "email,status,first_name\ngone@x.test,new,G\ndead@x.test,new,D\nwarm@x.test,interested,W\n",
             "?mode=merge")
    found = all_leads(c, member)
    assert {e: (x["status"], x["first_name"]) for e, x in found.items()} == {
        "gone@x.test": ("unsubscribed", "G"), "dead@x.test": ("bounced", "D"), "warm@x.test": ("interested", "W")}


def test_duplicates_within_the_file(appliance, web, member, monkeypatch):
    c = web.test_client()
    text = ("email,first_name,company,tags\n"
            "a@x.test,Ann,,one\n"
            "b@x.test,Bob,,\n"
            "A@X.test,,Acme,two\n"
            "a@x.test,Anna,,\n")
    skip = imported(c, member, text)
    assert (skip["imported"], skip["skipped"], skip["duplicates_in_file"]) == (2, 2, 2)
    a = all_leads(c, member)["a@x.test"]
    assert (a["first_name"], a["company"], a["tags"]) == ("Ann", "", ["one"])  # the first row wins

    c.delete(f"/api/v1/leads/{a['id']}", headers=member)
    monkeypatch.setattr(lead_import, "BATCH", 2)  # the repeats now land in later batches
    merge = imported(c, member, text, "?mode=merge")
    assert (merge["imported"], merge["updated"], merge["skipped"], merge["duplicates_in_file"]) == (1, 3, 0, 2)
    a = all_leads(c, member)["a@x.test"]
    assert (a["first_name"], a["company"], a["tags"]) == ("Anna", "Acme", ["one", "two"])


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiters_and_bom(appliance, web, member, delimiter):
    rows = [["Email Address", "First Name", "Company", "Tags"], ["a@x.test", "Ann", "Acme, Inc", "eu;vip"],
            ["b@x.test", "Bob", "Beta", ""]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    result = imported(web.test_client(), member, b"\xef\xbb\xbf" + buffer.getvalue().encode())
    assert result["imported"] == 2 and result["delimiter"] == delimiter and result["encoding"] == "utf-8"
    a = all_leads(web.test_client(), member)["a@x.test"]
    assert a["first_name"] == "Ann" and a["company"] == "Acme, Inc" and a["tags"] == ["eu", "vip"]


def test_latin1_and_utf16_files(appliance, web, member):
    c = web.test_client()
    latin = "email;first_name;last_name;city\nzoe@x.test;Zoë;Müller-Lüdenscheidt;Köln\n".encode("latin-1")
    result = imported(c, member, latin)
    assert result["encoding"] == "cp1252" and "Windows-1252" in result["encoding_note"]
    zoe = all_leads(c, member)["zoe@x.test"]
    assert (zoe["first_name"], zoe["last_name"], zoe["custom"]) == ("Zoë", "Müller-Lüdenscheidt", {"city": "Köln"})
    # UTF-8 at the start, a stray Windows-1252 byte far beyond the sniffed head
    mixed = "email,first_name\n" + "".join(f"p{i}@x.test,Ünal\n" for i in range(5000))
    mixed = mixed.encode() + "late@x.test,Renée\n".encode("cp1252")
    result = imported(c, member, mixed)
    assert result["imported"] == 5001 and result["encoding"] == "cp1252"
    assert all_leads(c, member, q="late@")["late@x.test"]["first_name"] == "Renée"
    assert all_leads(c, member, q="p4999@")["p4999@x.test"]["first_name"] == "Ünal"
    utf16 = "email\tfirst_name\nyu@x.test\t由美\n".encode("utf-16")
    result = imported(c, member, utf16)
    assert result["encoding"] == "utf-16" and result["delimiter"] == "\t"
    assert all_leads(c, member)["yu@x.test"]["first_name"] == "由美"


def test_custom_columns_and_header_aliases(appliance, web, member):
    text = ("E-mail,Given Name,Surname,Organisation,Job Title,Mobile,URL,Time Zone,Lead Status,Consent Basis,"
            "Lead Source,List,LinkedIn URL,2024 Revenue,Notes,Notes,id,\n"
            "a@x.test,Ann,Archer,Acme,CTO,+44 20 7946 0000,acme.example,America/New_York,interested,express,"
            "webinar,eu,https://li.example/a,1.2M,n1,n2,99,ignored\n")
    result = imported(web.test_client(), member, text)
    assert result["imported"] == 1, result
    a = all_leads(web.test_client(), member)["a@x.test"]
    assert (a["first_name"], a["last_name"], a["company"], a["title"], a["phone"], a["website"], a["timezone"],
            a["status"], a["consent"], a["source"], a["tags"]) == (
        "Ann", "Archer", "Acme", "CTO", "+44 20 7946 0000", "acme.example", "America/New_York", "interested",
        "express", "webinar", ["eu"])
    assert a["custom"] == {"linkedin_url": "https://li.example/a", "_2024_revenue": "1.2M", "notes": "n1",
                           "notes_2": "n2"}
    assert a["id"] != 99


def test_empty_header_only_and_headerless_files_are_refused(appliance, web, member):
    c = web.test_client()
    for body, words in ((b"", "empty"), (b"\xef\xbb\xbf\r\n\r\n", "empty"), (b"email,first_name\r\n", "no leads"),
                        (b"name,company\nAnn,Acme\n", "email"), (b"ann@x.test,Ann\nbob@x.test,Bob\n", "header")):
        r = post_csv(c, member, body)
        assert r.status_code == 422, body
        assert words in r.get_json()["error"]["message"], (body, r.get_json())
    assert post_csv(c, member, b"email\na@x.test\n", content_type="application/json").status_code == 415
    assert audit_rows(appliance, "lead.imported") == []
    assert c.get("/api/v1/leads", headers=member).get_json()["items"] == []


def test_import_is_streamed(appliance):
    """The preview reads the first rows without reading the rest of a large file."""

    class Counting(io.BytesIO):
        consumed = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.consumed += len(data)
            return data

    body = ("email,first_name\n" + "".join(f"user{i}@x.test,User {i}\n" for i in range(100_000))).encode()
    stream = Counting(body)
    csvfile = lead_import.open_csv(stream)
    first = [values for _, values in zip(range(5), csvfile.rows())]
    assert first[0] == (2, ["user0@x.test", "User 0"]) and len(first) == 5
    assert Counting.consumed < 200 * 1024 < len(body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                 max_size=12), min_size=2, max_size=2), min_size=1, max_size=8),
       st.sampled_from([",", ";", "\t"]), st.sampled_from(["\n", "\r\n"]))
def test_reader_round_trips_any_values_with_their_start_lines(rows, delimiter, newline):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_ALL)
    writer.writerow(["email", "note"])
    expected = []
    for row in rows:
        start = len(re.findall(r"\r\n|\r|\n", buffer.getvalue())) + 1  # physical lines so far, + 1
        writer.writerow(row)
        expected.append((start, row))
    assert list(lead_import.open_csv(io.BytesIO(buffer.getvalue().encode())).rows()) == expected


# -- export ----------------------------------------------------------------------------------

def test_export_escapes_formulas_filters_and_round_trips(appliance, web, member, viewer):
    c = web.test_client()
    c.post("/api/v1/leads", headers=member, json={"email": "evil@x.test", "first_name": "=cmd|' /C calc'!A0",
                                                  "company": "@SUM(1+1)", "phone": "+1 555 0100", "tags": ["eu"],
                                                  "custom": {"note": "-2+3", "plain": "fine"}})
    c.post("/api/v1/leads", headers=member, json={"email": "good@y.test", "first_name": "Gil", "tags": ["us"]})
    r = c.get("/api/v1/leads/export", headers=viewer)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"] and ".csv" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [x["email"] for x in rows] == ["evil@x.test", "good@y.test"]
    evil = rows[0]
    assert evil["first_name"] == "'=cmd|' /C calc'!A0" and evil["company"] == "'@SUM(1+1)"
    assert evil["phone"] == "'+1 555 0100" and evil["note"] == "'-2+3" and evil["plain"] == "fine"
    assert evil["tags"] == "eu" and rows[1]["note"] == ""
    only_us = list(csv.DictReader(io.StringIO(c.get("/api/v1/leads/export?tag=us", headers=viewer).get_data(
        as_text=True))))
    assert [x["email"] for x in only_us] == ["good@y.test"] and "note" not in only_us[0]
    assert audit_rows(appliance, "lead.exported")[0]["metadata"] == {"filters": {"tag": "us"}}
    assert c.get("/api/v1/leads/export?status=bogus", headers=viewer).status_code == 400
    # re-importing an export gives the same values (our own formula escaping is undone)
    for lead_id in [x["id"] for x in rows]:
        c.delete(f"/api/v1/leads/{lead_id}", headers=member)
    again = imported(c, member, r.get_data())
    assert again["imported"] == 2 and again["errors"] == []
    back = all_leads(c, member)["evil@x.test"]
    assert back["first_name"] == "=cmd|' /C calc'!A0" and back["phone"] == "+1 555 0100"
    assert back["custom"] == {"note": "-2+3", "plain": "fine"} and back["tags"] == ["eu"]


# -- pages -----------------------------------------------------------------------------------

def csrf_of(html: bytes) -> str:
    return html.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()


def uploads(appliance) -> list:
    directory = appliance.config.data_dir / "tmp"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_list_and_edit_pages(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    add_user(appliance, "viewer@x.test", role="viewer")
    m = web.test_client()
    s = login(m, "member@x.test")
    page = m.get("/leads")
    assert page.status_code == 200 and b">Leads</a>" in page.data
    add_user(appliance, "admin@x.test", role="admin")
    a = web.test_client()
    login(a, "admin@x.test")
    nav = a.get("/").data.decode()
    assert nav.index(">Dashboard</a>") < nav.index(">Leads</a>") < nav.index(">Mailboxes</a>")
    form = {"csrf_token": s.csrf, "email": "Ann@X.test", "first_name": "Ann", "status": "new", "consent": "unknown",
            "tags": "eu, vip", "custom_key_0": "LinkedIn", "custom_value_0": "https://li.example/ann",
            "custom_key_1": "", "custom_value_1": ""}
    r = m.post("/leads/new", data=form)
    assert r.status_code == 302, r.data[:3000]
    detail = m.get(r.headers["Location"])
    assert detail.status_code == 200 and b"ann@x.test" in detail.data and b"https://li.example/ann" in detail.data
    lead_id = int(r.headers["Location"].split("/leads/")[1].split("?")[0])
    bad = m.post(f"/leads/{lead_id}", data=dict(form, email="ann@x.test", phone="call me", title="Kept Title"))
    assert bad.status_code == 400 and b"Enter a phone number" in bad.data and b'value="Kept Title"' in bad.data
    ok = m.post(f"/leads/{lead_id}", data=dict(form, email="ann@x.test", title="CTO", custom_key_0="",
                                                custom_value_0="", status="won"))
    assert ok.status_code == 302
    lead = leads.get(appliance.db, lead_id)
    assert lead["title"] == "CTO" and lead["custom"] == {} and lead["status"] == "won" and lead["tags"] == ["eu", "vip"]
    listing = m.get("/leads?tag=vip&status=won&q=ann")
    assert b"ann@x.test" in listing.data and m.get("/leads?q=nobody").data.count(b"ann@x.test") == 0
    assert m.get("/leads?status=bogus").status_code == 400

    v = web.test_client()
    vs = login(v, "viewer@x.test")
    assert v.get("/leads").status_code == 200 and v.get(f"/leads/{lead_id}").status_code == 200
    assert b"<fieldset disabled>" in v.get(f"/leads/{lead_id}").data
    assert v.post(f"/leads/{lead_id}", data=dict(form, csrf_token=vs.csrf)).status_code == 403
    assert v.get("/leads/import").status_code == 403 and v.get("/leads/new").status_code == 403
    assert v.post(f"/leads/{lead_id}/delete", data={"csrf_token": vs.csrf}).status_code == 403
    assert m.post(f"/leads/{lead_id}/delete", data={"csrf_token": s.csrf}).status_code == 302
    assert m.get(f"/leads/{lead_id}").status_code == 404


UPLOAD = ("Email,First Name,Company,Notes,Internal ID\n"
          "ann@x.test,Ann,Acme,\"two\nlines\",a1\n"
          "broken,Bad,,,a2\n"
          "bob@x.test,Bob,Beta,,a3\n")


def upload_file(client, csrf, body=UPLOAD, **options):
    data = {"csrf_token": csrf, "file": (io.BytesIO(body.encode() if isinstance(body, str) else body), "leads.csv"),
            "mode": "skip", "tag": "", "source": "", **options}
    return client.post("/leads/import", data=data, content_type="multipart/form-data")


def test_import_page_upload_mapping_confirm(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    s = login(c, "member@x.test")
    assert c.get("/leads/import").status_code == 200
    r = upload_file(c, s.csrf, tag="fair")
    assert r.status_code == 200, r.data[:2000]
    page = r.data.decode()
    assert 'id="mapping-form"' in page and "5 columns, comma separated, UTF-8" in page
    assert '<option value="email" selected>' in page and '<option value="custom:internal_id" selected>' in page
    assert "two\nlines" in page and "bob@x.test" in page and 'value="fair"' in page
    # the upload waits in <data_dir>/tmp, private to the service user
    files = uploads(appliance)
    assert len(files) == 1 and files[0].read_bytes() == UPLOAD.encode()
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    mapping = {f"map_{i}": v for i, v in enumerate(["email", "first_name", "custom:employer", "custom:notes", ""])}

    # someone else cannot import this upload
    add_user(appliance, "other@x.test", role="member")
    o = web.test_client()
    os_ = login(o, "other@x.test")
    stolen = o.post("/leads/import/confirm", data={"csrf_token": os_.csrf, "token": token, **mapping})
    assert stolen.status_code == 410 and len(uploads(appliance)) == 1

    no_email = c.post("/leads/import/confirm", data={"csrf_token": s.csrf, "token": token, "mode": "skip",
                                                     **dict(mapping, map_0="")})
    assert no_email.status_code == 400 and b"email" in no_email.data and b'id="mapping-form"' in no_email.data
    done = c.post("/leads/import/confirm", data={"csrf_token": s.csrf, "token": token, "mode": "skip", "tag": "fair",
                                                 "source": "", **mapping})
    assert done.status_code == 200, done.data[:2000]
    assert b'id="imported">2<' in done.data and b'id="invalid">1<' in done.data
    assert re.search(rb"<td>4</td><td>email:", done.data)  # the bad row starts on line 4
    assert uploads(appliance) == []  # deleted as soon as the import finished
    ann = leads.search(appliance.db, q="ann@")[0]
    assert ann["company"] == "" and ann["custom"] == {"employer": "Acme", "notes": "two\nlines"}
    assert ann["tags"] == ["fair"]
    again = c.post("/leads/import/confirm", data={"csrf_token": s.csrf, "token": token, **mapping})
    assert again.status_code == 410 and b"expired" in again.data


def test_import_page_large_file_runs_as_a_job_with_progress(appliance, web, monkeypatch):
    monkeypatch.setattr(lead_import, "INLINE_MAX_BYTES", 100)
    monkeypatch.setattr(lead_import, "BATCH", 50)
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    s = login(c, "member@x.test")
    body = "email,first_name\n" + "".join(f"u{i}@x.test,User {i}\n" for i in range(400)) + "nope,Bad\n"
    token = re.search(r'name="token" value="([^"]+)"', upload_file(c, s.csrf, body).data.decode()).group(1)
    r = c.post("/leads/import/confirm", data={"csrf_token": s.csrf, "token": token, "mode": "skip",
                                              "map_0": "email", "map_1": "first_name"})
    assert r.status_code == 302 and "/leads/import/jobs/" in r.headers["Location"]
    job_id = int(r.headers["Location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = c.get(f"/api/v1/jobs/{job_id}").get_json()
        if job["status"] != "running":
            break
        time.sleep(0.05)
    assert job["status"] == "done" and job["done"] == job["total"] == 401
    assert job["result"]["imported"] == 400 and job["result"]["errors"] == [{"line": 402, "error": job["result"][
        "errors"][0]["error"]}]
    page = c.get(r.headers["Location"])
    assert b'id="imported">400<' in page.data and b"<td>402</td>" in page.data
    assert uploads(appliance) == []
    running = c.get(r.headers["Location"].replace(str(job_id), str(job_id + 99)))
    assert running.status_code == 404
    assert len(audit_rows(appliance, "lead.imported")) == 1


def test_job_page_shows_progress_while_running(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    login(c, "member@x.test")
    from appliance.db import jobs_repo
    with appliance.db.transaction() as conn:
        job_id = jobs_repo.create(conn, "lead_import", 1000, 1, "2024-01-01T00:00:00Z")
    page = c.get(f"/leads/import/jobs/{job_id}")
    assert page.status_code == 200
    assert b'id="job-progress"' in page.data and b"js/progress.js" in page.data and b"js/lead-import.js" in page.data
    assert b'<span id="job-state">running</span>' in page.data


def test_uploads_never_outlive_the_hour(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    c = web.test_client()
    s = login(c, "member@x.test")
    # a request refused by the CSRF check leaves nothing behind
    refused = c.post("/leads/import", data={"file": (io.BytesIO(b"email\na@x.test\n"), "a.csv")},
                     content_type="multipart/form-data")
    assert refused.status_code == 400 and uploads(appliance) == []
    # an empty upload is refused at once and deleted
    empty = upload_file(c, s.csrf, b"")
    assert empty.status_code == 400 and b"The file is empty" in empty.data and uploads(appliance) == []
    header_only = upload_file(c, s.csrf, "email,first_name\n")
    assert header_only.status_code == 400 and b"no leads" in header_only.data and uploads(appliance) == []
    # cancelled: deleted
    token = re.search(r'name="token" value="([^"]+)"', upload_file(c, s.csrf).data.decode()).group(1)
    assert len(uploads(appliance)) == 1
    assert c.post("/leads/import/cancel", data={"csrf_token": s.csrf, "token": token}).status_code == 302
    assert uploads(appliance) == []
    # abandoned: purged once older than the limit (the maintenance job runs the purge)
    upload_file(c, s.csrf)
    (path,) = uploads(appliance)
    assert upload_store.purge_stale_uploads(appliance.config.data_dir) == 0
    old = time.time() - upload_store.UPLOAD_MAX_AGE - 1
    os.utime(path, (old, old))
    from appliance.services import maintenance
    job = {j.name: j for j in maintenance.jobs(appliance)}["maintenance.purge_lead_uploads"]
    assert job.interval + upload_store.UPLOAD_MAX_AGE <= 3600
    job.run()
    assert uploads(appliance) == []
    assert c.post("/leads/import", data={"csrf_token": s.csrf}, content_type="multipart/form-data").status_code == 400


def test_ids_and_cursors_beyond_64_bits_are_refused_not_a_server_error(web, member):
    """Found by the schema run: such numbers overflowed in the database driver (500)."""
    client, too_big = web.test_client(), 2**63
    for method in ("GET", "PATCH", "DELETE"):
        r = client.open(f"/api/v1/leads/{too_big}", method=method, json={}, headers=member)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found", method
    r = client.get(f"/api/v1/leads?cursor={too_big}", headers=member)
    assert r.status_code == 400 and r.get_json()["error"]["details"]["fields"] == {"cursor": "Invalid cursor."}
