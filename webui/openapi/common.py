"""Building blocks of the OpenAPI document: shared schemas, parameters, the error responses, and
`finish()`, which gives every operation what all operations of its kind have in common.

An area module describes only what is particular to its routes (summary, parameters, body,
success responses, the errors its service can raise, and `x-mailflow-scope`/`x-mailflow-role`);
the common errors (401, 403, 429, 404 on an id in the path, 415 and 413 for a body, and the
CSRF 400 of a cookie call) and the security requirements are added here, from the method and
the path, so no module can forget them.
"""

from __future__ import annotations

from copy import deepcopy

from appliance.services.authz import ROLES, SCOPES

JSON = "application/json"
MAX_LIMIT = 500
SAFE_METHODS = ("get", "head", "options")
# x-mailflow-scope: the API-key scope an operation needs; "none" marks a public operation.
OPERATION_SCOPES = ("none", *SCOPES)

ERROR_TEXT = {
    400: "Bad input: validation failed (`details.fields` names each field), or a cookie call without "
         "its CSRF token (`csrf_failed`).",
    401: "No credentials, or credentials that are not valid (any more).",
    403: "The caller's role or the API key's scope does not allow this (`details.required_role` or "
         "`details.required_scope`).",
    404: "No such object.",
    409: "Conflicts with the current state (a duplicate, a wrong status).",
    410: "The link or token was valid once and is not any more.",
    413: "The body is larger than the upload limit (50 MiB).",
    415: "The body has the wrong Content-Type.",
    422: "Understood, but refused by a rule (each failed check listed in `details`).",
    429: "Too many requests; wait the number of seconds in Retry-After.",
    502: "A mail server the call had to talk to refused or could not be reached.",
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    """The schema, or null (OpenAPI 3.1: a type list, no `nullable`)."""
    out = deepcopy(schema)
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def string(max_length: int | None = None, **extra) -> dict:
    schema = {"type": "string", **extra}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def integer(minimum: int | None = None, maximum: int | None = None, **extra) -> dict:
    schema = {"type": "integer", **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def enum(values, **extra) -> dict:
    return {"type": "string", "enum": list(values), **extra}


def obj(properties: dict, required=(), *, closed: bool = False, **extra) -> dict:
    """An object schema; `closed` for request bodies whose unknown fields the service refuses."""
    schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


ID = integer(1, 2**63 - 1)
TIME = string(format="date-time", description="ISO 8601, UTC, with Z.")
TIME_OR_NULL = nullable(TIME)
EMAIL = string(254, format="email")
TAGS = array(string(40), maxItems=20, description="Lower case; letters, digits, spaces and . : / + - _.")


def json_body(schema: dict, *, required: bool = True, description: str | None = None) -> dict:
    body = {"required": required, "content": {JSON: {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def csv_body(description: str) -> dict:
    return {"required": True, "description": description,
            "content": {"text/csv": {"schema": {"type": "string"}}}}


def ok(schema: dict | None, description: str = "OK", media: str = JSON) -> dict:
    response = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


NO_CONTENT = {"description": "Done; no body."}


def page_of(item: dict) -> dict:
    """The list envelope: `{"items": [...], "next_cursor": "..." | null}`."""
    cursor = nullable(string(description="Pass as ?cursor= for the next page."))
    return obj({"items": array(item), "next_cursor": cursor}, ["items", "next_cursor"])


def query(name: str, schema: dict, description: str, *, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def path_id(name: str, what: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": f"The {what}'s id.", "schema": ID}


LIST_PARAMS = [
    query("limit", integer(1, MAX_LIMIT, default=50), f"Page size, 1 to {MAX_LIMIT}."),
    query("cursor", string(pattern="^[0-9]*$"), "`next_cursor` of the previous page."),
]


def operation(operation_id: str, summary: str, *, tag: str, scope: str, role: str | None,
              responses: dict, description: str = "", parameters: list | None = None,
              body: dict | None = None, errors: tuple[int, ...] = ()) -> dict:
    """One operation. `responses` maps status codes to responses (success ones; error ones
    that need their own description may appear too); `errors` lists the further error statuses
    its service can produce beyond the common ones `finish()` adds."""
    if scope not in OPERATION_SCOPES:
        raise ValueError(f"{operation_id}: unknown scope {scope!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"{operation_id}: unknown role {role!r}")
    op = {"operationId": operation_id, "summary": summary, "tags": [tag],
          "x-mailflow-scope": scope, "x-mailflow-role": role or "none",
          "responses": {str(status): response for status, response in responses.items()}}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = body
    op["x-mailflow-errors"] = sorted(set(errors))
    return op


def error_response(status: int, *, html: bool = False) -> dict:
    if html:  # pages outside /api answer errors with a page, not JSON (webui/errors.py)
        return {"description": ERROR_TEXT[status], "content": {"text/html": {"schema": string()}}}
    return {"$ref": f"#/components/responses/Error{status}"}


def finish(path: str, method: str, op: dict) -> dict:
    """Add the security requirements and the errors every operation of this kind can give."""
    op = deepcopy(op)
    errors = set(op.pop("x-mailflow-errors", ()))
    public = op["x-mailflow-scope"] == "none"
    state_changing = method not in SAFE_METHODS
    errors.add(429)  # per-IP limits apply to every route
    if public:
        op["security"] = []
    else:
        errors.update((401, 403))
        cookie = {"sessionCookie": [], "csrfHeader": []} if state_changing else {"sessionCookie": []}
        op["security"] = [{"bearer": []}, cookie]
        if state_changing:
            errors.add(400)  # the CSRF check of a cookie call
    if "{" in path:
        errors.add(404)
    if any(p["in"] == "query" for p in op.get("parameters", ())):
        errors.add(400)  # a query parameter that is not valid
    media = set(op.get("requestBody", {}).get("content", {}))
    if media:
        errors.add(413)
    if media & {JSON, "text/csv"}:
        errors.update((400, 415))
    html = not (path.startswith("/api/") or path == "/healthz")
    for status in sorted(errors):
        op["responses"].setdefault(str(status), error_response(status, html=html))
    return op


def error_schema() -> dict:
    return obj({"error": obj({
        "code": string(pattern="^[a-z][a-z0-9_]*$", description="A stable snake_case code."),
        "message": string(description="A sentence for people."),
        "details": {"type": "object", "description": "More, by error: `fields` (field → problem) for "
                                                     "validation, `checks` for launch refusals ..."},
    }, ["code", "message", "details"])}, ["error"])


def components_responses() -> dict:
    responses = {}
    for status, text in ERROR_TEXT.items():
        response = {"description": text, "content": {JSON: {"schema": ref("Error")}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"required": True, "description": "Seconds to wait.",
                                                   "schema": integer(1)}}
        responses[f"Error{status}"] = response
    return responses


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "API key (mf_<prefix>_<secret>) or session JWT",
               "description": "An API key (Settings → API keys; scopes read, write, admin) or the `token` "
                              "of POST /api/v1/auth/login. No CSRF token is needed."},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "mf_session",
                      "description": "The session cookie set by POST /api/v1/auth/login (with its companion "
                                     "`mf_csrf` cookie). A session has every scope its role allows."},
    "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRFToken",
                   "description": "The `csrf_token` of the login response; required on every state-changing "
                                  "call made with the session cookie."},
}
