"""Schemathesis against the real app (in-process WSGI, the real encrypted database), driven by
GET /api/v1/openapi.json: every operation, with valid and invalid input, must never answer 5xx,
and every response must match the document (status code, content type, body schema, headers).

- One test per operation; each draws cases from schemathesis' strategies for the operation,
  valid ones and (where the operation takes input) invalid ones, and calls the app through
  schemathesis, which runs the checks. Derandomized, with a bounded number of examples per
  operation, so CI runs are repeatable and the whole run stays around a minute on two cores.
- Calls go with an API key holding every scope (owner), so they reach the services; a fuzzed
  DELETE of that key is repaired by minting a new one.
- Rate limits are off for the run (each operation documents its 429; test_csrf_and_limits covers
  the limits themselves).
- Outbound connections are refused at the socket (mailbox checks and test sends then fail as a
  host that cannot be reached): fuzzed host names must never reach a real network.
"""

from __future__ import annotations

import socket

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from appliance.runtime import open_appliance
from appliance.services import api_keys
from appliance.services.authz import Principal
from webui.openapi import SPEC

from .support.access import add_user
from .support.appliance import make_config

pytestmark = pytest.mark.slow

CONFIG = {
    "generation": {"deterministic": True, "with-security-parameters": False},
    "checks": {"enabled": False, "not_a_server_error": {"enabled": True},
               "status_code_conformance": {"enabled": True}, "content_type_conformance": {"enabled": True},
               "response_schema_conformance": {"enabled": True},
               "response_headers_conformance": {"enabled": True}},
}
EXAMPLES = 25  # per operation and mode
# Each valid example of these pays a real bcrypt cost-12 hash or check (~0.25 s): fewer examples.
BCRYPT_BOUND = {"POST /api/v1/auth/login", "POST /api/v1/auth/password", "POST /api/v1/api-keys",
                "POST /api/v1/setup/{token}", "POST /api/v1/invites/{token}/accept"}
BCRYPT_EXAMPLES = 6
# Documented 5xx answers that this run provokes on purpose; their status and body are still checked.
EXPECTED_5XX = {
    "GET /healthz": [not_a_server_error],  # 503: this in-process appliance runs no scheduler
    "POST /api/v1/campaigns/{campaign_id}/test-send": [not_a_server_error],  # 502: no mail server reachable
}
CSV_COLUMNS = ["email", "first_name", "company", "tags", "value", "reason", "smtp_host", "password", "Custom Col"]


@st.composite
def csv_files(draw) -> bytes:
    """CSV-shaped bodies (a header, then rows of fuzzed cells) so imports get past the header."""
    header = draw(st.lists(st.sampled_from(CSV_COLUMNS), min_size=1, max_size=5, unique=True))
    cell = st.one_of(st.just("a@b.test"), st.text(max_size=12))
    rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=4))
    lines = [",".join(header)] + [",".join(f'"{c.replace(chr(34), chr(34) * 2)}"' for c in row) for row in rows]
    return "\n".join(lines).encode()


schemathesis.openapi.media_type("text/csv", csv_files())


class NoNetwork:
    """Refuse every outbound TCP connection and every name lookup for the duration of the run."""

    def __init__(self, monkeypatch):
        real_connect = socket.socket.connect

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise ConnectionRefusedError("outbound connections are refused during the schema run")
            return real_connect(sock, address)

        def getaddrinfo(*args, **kwargs):
            raise socket.gaierror(socket.EAI_NONAME, "name lookups are refused during the schema run")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class OwnerKey:
    """The API key the run calls with; minted again if the run revokes it."""

    def __init__(self, appliance, user_id: int):
        self.db, self.cost = appliance.db, appliance.config.bcrypt_cost
        self.owner = Principal(user_id=user_id, email="owner@x.test", role="owner", via="session")
        self.key = self.mint()

    def mint(self) -> dict:
        return api_keys.create(self.db, self.owner, name="schema run", scopes=["read", "write", "admin"],
                               cost=self.cost)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key['key']}"}

    def repair(self, case, response) -> None:
        if case.method == "DELETE" and case.path == "/api/v1/api-keys/{key_id}" and response.status_code == 204 \
                and case.path_parameters.get("key_id") == self.key["id"]:
            self.key = self.mint()


def seed(client, headers: dict) -> None:
    """A few objects of each kind, so generated ids sometimes find one."""
    def ok(response):
        assert response.status_code < 300, response.get_json()
        return response.get_json()

    ok(client.put("/api/v1/settings/sender-identity", headers=headers,
                  json={"company": "Acme", "postal_address": "1 Road\nTown"}))
    for n in range(1, 3):
        ok(client.post("/api/v1/mailboxes?check=false", headers=headers, json={
            "email": f"box{n}@acme.test", "provider": "custom", "smtp_host": "127.0.0.1", "smtp_port": 1,
            "smtp_security": "ssl", "imap_host": "127.0.0.1", "imap_port": 1, "imap_security": "ssl",
            "password": "app password"}))
        ok(client.post("/api/v1/leads", headers=headers, json={"email": f"lead{n}@example.test", "tags": ["t"]}))
        ok(client.post("/api/v1/suppressions", headers=headers, json={"value": f"gone{n}.example"}))
    for n in range(1, 3):
        ok(client.post("/api/v1/campaigns", headers=headers, json={
            "name": f"C{n}", "mailbox_ids": [1, 2],
            "steps": [{"delay_minutes": 0, "variants": [{"subject": "Hi {{first_name|there}}", "body": "Hello"}]}]}))
    ok(client.post("/api/v1/campaigns/1/leads", headers=headers, json={"lead_ids": [1, 2]}))
    ok(client.post("/api/v1/users", headers=headers, json={"email": "member@x.test", "role": "member"}))


OPERATIONS = [f"{method.upper()} {path}" for path, item in SPEC["paths"].items() for method in item]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One appliance for the whole run (each operation's test reuses it), seeded, with the key."""
    from webui import create_app
    from webui.limits import limiter

    root = tmp_path_factory.mktemp("schema-run")
    appliance = open_appliance(make_config(root), create=True, env={})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limiter, "enabled", False)
        web = create_app(appliance)
        web.config["TESTING"] = True
        owner_id = add_user(appliance, "owner@x.test", role="owner")
        key = OwnerKey(appliance, owner_id)
        seed(web.test_client(), key.headers())
        NoNetwork(patch)
        served = web.test_client().get("/api/v1/openapi.json").get_json()
        schema = schemathesis.openapi.from_dict(served, config=schemathesis.Config.from_dict(CONFIG))
        schema.app = web  # calls go in-process, through the WSGI app (from_wsgi would skip this document's route)
        operations = {f"{op.method.upper()} {op.path}": op for op in
                      (result.ok() for result in schema.get_all_operations())}
        yield operations, key
    appliance.close()


@pytest.mark.parametrize("label", OPERATIONS)
def test_the_api_keeps_to_its_document(api, label):
    operations, key = api
    operation = operations[label]
    has_input = operation.body or any(True for _ in operation.iter_parameters())
    for mode in MODES if has_input else MODES[:1]:  # nothing to make invalid without input
        @settings(max_examples=BCRYPT_EXAMPLES if label in BCRYPT_BOUND else EXAMPLES, deadline=None,
                  derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call_and_validate(headers=key.headers(), excluded_checks=EXPECTED_5XX.get(label, []))
            key.repair(case, response)

        check()
