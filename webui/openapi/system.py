"""The audit log, background jobs, and the public routes: health, this document, unsubscribe links."""

from __future__ import annotations

from .common import (ID, LIST_PARAMS, TIME, TIME_OR_NULL, enum, integer, nullable, obj, ok, operation, page_of,
                     path_id, query, ref, string)

AUDIT_FILTERS = [
    query("action", string(320), "An action (`user.invited`), or a prefix ending in `.` (`user.`)."),
    query("actor", string(320), "The actor's label as the log shows it (an email, `system:scheduler` ...)."),
    query("since", string(description="ISO 8601 date or time"), "From this moment on (inclusive)."),
    query("until", string(description="ISO 8601 date or time"), "Before this moment (exclusive)."),
]
UNSUBSCRIBE_TOKEN = {"name": "token", "in": "path", "required": True,
                     "description": "The signed token of the link in the email.", "schema": string(200)}
HTML = "text/html"

SCHEMAS = {
    "AuditEntry": obj({
        "id": ID, "at": TIME,
        "actor": obj({"type": string(), "id": nullable(integer()), "label": string()}, ["type", "id", "label"]),
        "ip": nullable(string()), "action": string(),
        "target": nullable(obj({"type": string(), "id": nullable(string())}, ["type", "id"])),
        "metadata": {"type": "object"},
    }, ["id", "at", "actor", "ip", "action", "target", "metadata"]),
    "Job": obj({
        "id": ID, "kind": string(), "status": enum(("running", "done", "failed")),
        "total": integer(0), "done": integer(0), "failed": integer(0), "created_by": nullable(integer()),
        "created_at": TIME, "finished_at": TIME_OR_NULL,
        "result": {"description": "What the job produced (by kind), once finished."},
    }, ["id", "kind", "status", "total", "done", "failed", "created_at", "finished_at"]),
    "Health": obj({"status": enum(("ok", "degraded")), "db": enum(("ok", "error")), "scheduler": string(),
                   "sync": enum(("not_started", "running", "stopping", "stopped", "failed"))},
                  ["status", "db", "scheduler", "sync"]),
}

PATHS = {
    "/api/v1/audit-log": {"get": operation(
        "list_audit_log", "Read the audit log, newest first", tag="audit-log", scope="admin", role="admin",
        parameters=[*AUDIT_FILTERS, *LIST_PARAMS], responses={200: ok(page_of(ref("AuditEntry")))})},
    "/api/v1/audit-log/export": {"get": operation(
        "export_audit_log", "Export the audit log (CSV or JSON)", tag="audit-log", scope="admin", role="admin",
        description="Every entry matching the filters, streamed; the export itself is recorded as "
                    "`audit.exported`. CSV cells are formula-escaped.",
        parameters=[query("format", enum(("csv", "json"), default="csv"), "The file format."), *AUDIT_FILTERS],
        responses={200: {"description": "The entries as a download.", "content": {
            "text/csv": {"schema": string()},
            "application/json": {"schema": obj({"exported_at": TIME, "filters": {"type": "object"},
                                                "items": {"type": "array", "items": ref("AuditEntry")}},
                                               ["exported_at", "filters", "items"])}}}})},
    "/api/v1/jobs/{job_id}": {"get": operation(
        "get_job", "Progress of a background job", tag="jobs", scope="read", role="viewer",
        description="Your own jobs; admins see every job.",
        parameters=[path_id("job_id", "job")], responses={200: ok(ref("Job"))})},
    "/api/v1/openapi.json": {"get": operation(
        "openapi", "This document", tag="meta", scope="none", role=None,
        description="Public: it describes the routes and holds no secret.",
        responses={200: ok({"type": "object"}, "The OpenAPI 3.1 document.")})},
    "/healthz": {"get": operation(
        "health", "Liveness for monitors", tag="meta", scope="none", role=None,
        responses={200: ok(ref("Health"), "Database and scheduler are fine."),
                   503: ok(ref("Health"), "Something is wrong; the body says what.")})},
    "/u/{token}": {
        "get": operation("unsubscribe_page", "The unsubscribe confirmation page", tag="unsubscribe", scope="none",
                         role=None, parameters=[UNSUBSCRIBE_TOKEN],
                         responses={200: ok(string(), "The page, with a button to confirm.", HTML),
                                    404: ok(string(), "Not a valid link.", HTML)}),
        "post": operation(
            "unsubscribe", "Unsubscribe (RFC 8058 one-click)", tag="unsubscribe", scope="none", role=None,
            description="Mail providers post `List-Unsubscribe=One-Click`; the page's button posts too. "
                        "No sign-in and no CSRF token: the signed token is the authority.",
            parameters=[UNSUBSCRIBE_TOKEN],
            body={"required": False, "content": {"application/x-www-form-urlencoded": {"schema": obj({
                "List-Unsubscribe": enum(("One-Click",))})}}},
            responses={200: ok(string(), "Unsubscribed.", HTML), 404: ok(string(), "Not a valid link.", HTML)}),
    },
}
