"""GET /api/v1/openapi.json: a valid OpenAPI 3.1 document that describes exactly the routes the
app has (both directions), with every path parameter, the error format and a scope on every
operation."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from werkzeug.routing import IntegerConverter

from webui.openapi import SPEC
from webui.openapi.common import OPERATION_SCOPES

IGNORED_METHODS = {"HEAD", "OPTIONS"}
_PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def described(rule_path: str) -> bool:
    """The routes the document covers: the API, and the public routes integrators meet."""
    return rule_path.startswith("/api/v1/") or rule_path == "/healthz" or rule_path.startswith("/u/")


def spec_path(rule_path: str) -> str:
    return _PLACEHOLDER.sub(lambda m: "{" + m.group(2) + "}", rule_path)


def app_routes(app) -> dict[tuple[str, str], object]:
    routes = {}
    for rule in app.url_map.iter_rules():
        if described(rule.rule):
            for method in sorted((rule.methods or set()) - IGNORED_METHODS):
                routes[(spec_path(rule.rule), method.lower())] = rule
    return routes


def spec_operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}


def test_the_document_is_valid_openapi_3_1():
    validate(SPEC, cls=OpenAPIV31SpecValidator)
    assert SPEC["openapi"].startswith("3.1.")


def test_it_is_served_without_credentials_as_json(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.get_json() == SPEC
    assert "Content-Security-Policy" in r.headers  # an ordinary response of the app


def test_every_api_route_is_described(web):
    missing = sorted(f"{m.upper()} {p}" for p, m in set(app_routes(web)) - set(spec_operations(SPEC)))
    assert missing == [], f"routes without an OpenAPI description (add them under webui/openapi/): {missing}"


def test_every_description_has_a_route(web):
    stale = sorted(f"{m.upper()} {p}" for p, m in set(spec_operations(SPEC)) - set(app_routes(web)))
    assert stale == [], f"described operations that the app does not have: {stale}"


def test_the_comparison_notices_a_route_without_a_description(web):
    @web.route("/api/v1/undocumented-thing", methods=["POST"])
    def undocumented():  # pragma: no cover - never called
        return ""

    assert ("/api/v1/undocumented-thing", "post") in set(app_routes(web)) - set(spec_operations(SPEC))


def test_path_parameters_match_the_routes(web):
    routes = app_routes(web)
    for (path, method), op in spec_operations(SPEC).items():
        rule = routes[(path, method)]
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(rule.arguments), f"{method.upper()} {path}"
        for name, converter in rule._converters.items():
            expected = "integer" if isinstance(converter, IntegerConverter) else "string"
            assert declared[name]["schema"]["type"] == expected, f"{method.upper()} {path}: {name}"
            assert declared[name]["required"] is True


def test_every_operation_has_a_scope_a_role_and_security():
    ids = set()
    for (path, method), op in spec_operations(SPEC).items():
        where = f"{method.upper()} {path}"
        assert op["operationId"] not in ids, where
        ids.add(op["operationId"])
        assert op["x-mailflow-scope"] in OPERATION_SCOPES, where
        if op["x-mailflow-scope"] == "none":
            assert op["security"] == [] and op["x-mailflow-role"] == "none", where
        else:
            schemes = [set(requirement) for requirement in op["security"]]
            assert {"bearer"} in schemes, where
            cookie = {"sessionCookie", "csrfHeader"} if method != "get" else {"sessionCookie"}
            assert cookie in schemes, where
            assert {"401", "403"} <= set(op["responses"]), where
        assert "429" in op["responses"], where  # per-IP limits apply everywhere


def test_state_changing_operations_never_need_only_the_read_scope():
    """A read-only key must not change anything; the one exception ends the caller's own session
    and does nothing for an API key."""
    read_writes = sorted(f"{m.upper()} {p}" for (p, m), op in spec_operations(SPEC).items()
                         if m != "get" and op["x-mailflow-scope"] == "read")
    assert read_writes == ["POST /api/v1/auth/logout"]


def test_api_errors_use_the_error_format():
    error = {"$ref": "#/components/schemas/Error"}
    assert SPEC["components"]["schemas"]["Error"]["required"] == ["error"]
    for status, response in SPEC["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == error, status
    for (path, method), op in spec_operations(SPEC).items():
        if not path.startswith("/api/"):
            continue
        for status, response in op["responses"].items():
            if int(status) >= 400 and "$ref" not in response:
                assert response["content"]["application/json"]["schema"]["$ref"].startswith(
                    "#/components/schemas/"), f"{method.upper()} {path} {status}"


@pytest.mark.parametrize("path,method,statuses", [
    ("/api/v1/leads", "post", {"201", "400", "401", "403", "409", "413", "415", "429"}),
    ("/api/v1/leads/{lead_id}", "get", {"200", "401", "403", "404", "429"}),
    ("/api/v1/campaigns/{campaign_id}/launch", "post", {"200", "400", "401", "403", "404", "409", "422", "429"}),
    ("/api/v1/auth/login", "post", {"200", "400", "401", "413", "415", "429"}),
])
def test_responses_list_what_each_operation_can_answer(path, method, statuses):
    assert set(SPEC["paths"][path][method]["responses"]) == statuses


def test_request_bodies_carry_the_real_constraints():
    schemas = SPEC["components"]["schemas"]
    lead = schemas["LeadCreate"]
    assert lead["required"] == ["email"] and lead["additionalProperties"] is False
    assert lead["properties"]["first_name"]["maxLength"] == 200
    assert "meeting_booked" in lead["properties"]["status"]["enum"]
    mailbox = schemas["MailboxCreate"]["properties"]
    assert mailbox["smtp_port"] == {"type": "integer", "minimum": 1, "maximum": 65535}
    assert mailbox["password"]["writeOnly"] is True
    assert schemas["CampaignCreate"]["properties"]["steps"]["maxItems"] == 20
    assert "password" not in schemas["Mailbox"]["properties"]  # secrets are write-only
    assert "key" in str(schemas["NewApiKey"]) and "key" not in schemas["ApiKey"]["properties"]
