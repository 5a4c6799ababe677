"""Connected mailboxes (admins): connect, edit, live checks, pause/resume, CSV import."""

from __future__ import annotations

from appliance.services.mailbox_input import DEFAULTS, PROVIDER_KEYS, SECURITIES

from .common import (EMAIL, ID, LIST_PARAMS, NO_CONTENT, TAGS, TIME, TIME_OR_NULL, array, csv_body, enum,
                     integer, json_body, nullable, obj, ok, operation, page_of, path_id, query, ref, string)

TAG = "mailboxes"
MAILBOX_ID = path_id("mailbox_id", "mailbox")
STATUSES = ("active", "paused", "error")
CHECK_CODES = ("host_unreachable", "timeout", "tls_failed", "certificate_untrusted", "starttls_not_offered",
               "auth_not_offered", "auth_failed", "protocol_error")
CHECK_PARAM = query("check", enum(("true", "false"), default="true"),
                    "`false` skips the live SMTP/IMAP check after saving.")

PORT = integer(1, 65535)
DATE_OR_NULL = nullable(string(format="date"))
FIELDS = {  # what a client may write; the service's parsers enforce the same bounds
    "email": EMAIL, "display_name": string(200), "provider": enum(PROVIDER_KEYS, description=(
        "A preset fills hosts, ports and security; `custom` for any other host.")),
    "smtp_host": string(253), "smtp_port": PORT, "smtp_security": enum(SECURITIES),
    "imap_host": string(253), "imap_port": PORT, "imap_security": enum(SECURITIES),
    "username": string(320, description="Default: the email address."),
    "password": string(1024, writeOnly=True, description="The App Password; write-only. Blank on update keeps "
                                                          "the stored one."),
    "reply_to": nullable(EMAIL), "signature": string(5000), "tags": TAGS,
    "daily_limit": integer(1, 10000, default=DEFAULTS["daily_limit"]),
    "min_gap_seconds": integer(0, 86400, default=DEFAULTS["min_gap_seconds"]),
    "max_gap_seconds": integer(0, 86400, default=DEFAULTS["max_gap_seconds"]),
    "ramp_start": nullable(integer(1, 10000)), "ramp_step": nullable(integer(1, 1000)),
    "ramp_started_on": DATE_OR_NULL,
    "sending_enabled": {"type": "boolean"}, "save_sent_copy": {"type": "boolean"},
    "sent_folder": nullable(string()), "junk_folder": nullable(string()),
    "tls_ca_pem": nullable(string(description="Trust this private CA (PEM).")),
    "tls_pin_sha256": nullable(string(description="Pin the server certificate (SHA-256 fingerprint).")),
}
READ_ONLY = {
    "id": ID, "status": enum(STATUSES), "status_reason": nullable(string()), "last_error": nullable(string()),
    "last_error_code": nullable(string()), "last_error_at": TIME_OR_NULL, "consecutive_failures": integer(0),
    "last_checked_at": TIME_OR_NULL, "created_at": TIME, "updated_at": TIME, "effective_daily_limit": integer(0),
    "tls": obj({"mode": enum(("system", "ca", "pin")), "pinned_sha256": string()}, ["mode"]),
    "check": ref("LiveCheck"),
}
SHOWN = {name: schema for name, schema in FIELDS.items() if name not in ("password", "tls_ca_pem", "tls_pin_sha256")}
ENDPOINT_CHECK = obj({"ok": {"type": "boolean"}, "error": nullable(string()),
                      "code": nullable(enum(CHECK_CODES))}, ["ok", "error", "code"])

SCHEMAS = {
    "Mailbox": obj({**SHOWN, **READ_ONLY}, [*SHOWN, *(k for k in READ_ONLY if k != "check")]),
    "MailboxDetail": {"allOf": [ref("Mailbox"), obj({"credential_reads": array(obj({
        "day": string(format="date"), "reads": integer(0), "last_at": TIME}, ["day", "reads", "last_at"]),
        description="The scheduler's decryptions of the password, per day.")}, ["credential_reads"])]},
    "MailboxCreate": obj(FIELDS, ["email", "password"], description=(
        "smtp_* and imap_* are required unless a provider preset fills them.")),
    "MailboxUpdate": obj(FIELDS, description="Only the fields given change; `status` changes through pause "
                                             "and resume."),
    "LiveCheck": obj({
        "smtp": ENDPOINT_CHECK,
        "imap": {"allOf": [ENDPOINT_CHECK, obj({"warning": nullable(string()), "folders": obj({
            "inbox": nullable(string()), "sent": nullable(string()), "junk": nullable(string())})})]},
    }, ["smtp", "imap"]),
    "ImportErrors": array(obj({"line": integer(1), "error": string()}, ["line", "error"]),
                          description="Each refused row with the line it starts on."),
    "MailboxImport": obj({"imported": integer(0), "skipped": integer(0), "errors": ref("ImportErrors"),
                          "job": nullable(ref("Job"))}, ["imported", "skipped", "errors", "job"]),
}


def _admin(operation_id: str, summary: str, **kwargs) -> dict:
    return operation(operation_id, summary, tag=TAG, scope="admin", role="admin", **kwargs)


PATHS = {
    "/api/v1/mailboxes": {
        "get": _admin("list_mailboxes", "List mailboxes", parameters=[
            query("status", enum(STATUSES), "Only mailboxes in this state."),
            query("tag", string(40), "Only mailboxes with this tag."),
            query("q", string(200), "Part of the address or display name."), *LIST_PARAMS],
            responses={200: ok(page_of(ref("Mailbox")))}),
        "post": _admin("create_mailbox", "Connect a mailbox", parameters=[CHECK_PARAM],
                       description="Saved first, then checked live (SMTP: TLS, AUTH; IMAP: TLS, LOGIN, folders); "
                                   "the mailbox is kept either way and `check` says what failed.",
                       body=json_body(ref("MailboxCreate")), responses={201: ok(ref("Mailbox"), "Connected.")},
                       errors=(409,)),
    },
    "/api/v1/mailboxes/{mailbox_id}": {
        "get": _admin("get_mailbox", "A mailbox with its health", parameters=[MAILBOX_ID],
                      responses={200: ok(ref("MailboxDetail"))}),
        "patch": _admin("update_mailbox", "Change a mailbox", parameters=[MAILBOX_ID, CHECK_PARAM],
                        description="A change of the connection settings or password runs the live check.",
                        body=json_body(ref("MailboxUpdate")), responses={200: ok(ref("Mailbox"))}, errors=(409,)),
        "delete": _admin("delete_mailbox", "Disconnect a mailbox", parameters=[MAILBOX_ID],
                         description="Its unsent messages move to the rest of the campaign's pool.",
                         responses={204: NO_CONTENT}),
    },
    "/api/v1/mailboxes/{mailbox_id}/test": {"post": _admin(
        "check_mailbox", "Run the live SMTP + IMAP check", parameters=[MAILBOX_ID],
        responses={200: ok(ref("LiveCheck"), "The outcome; `ok` false with a `code` for each failure.")})},
    "/api/v1/mailboxes/{mailbox_id}/pause": {"post": _admin(
        "pause_mailbox", "Pause sending from a mailbox", parameters=[MAILBOX_ID],
        responses={200: ok(ref("Mailbox"))})},
    "/api/v1/mailboxes/{mailbox_id}/resume": {"post": _admin(
        "resume_mailbox", "Resume a mailbox after a passing live check", parameters=[MAILBOX_ID],
        responses={200: ok(ref("Mailbox"), "Resumed; `check` holds the passing check."),
                   409: ok(ref("Mailbox"), "The check failed, so the mailbox stays as it was; `check` says why.")})},
    "/api/v1/mailboxes/import": {"post": _admin(
        "import_mailboxes", "Connect many mailboxes from a CSV file", parameters=[CHECK_PARAM],
        description="One mailbox per row, columns named like the fields. Good rows are saved, bad ones listed "
                    "by line; the live checks run in the background (`job`).",
        body=csv_body("The CSV file, UTF-8, with a header line."),
        responses={200: ok(ref("MailboxImport"))}, errors=(422,))},
}
