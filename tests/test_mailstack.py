"""Smoke tests of the local mail stack itself (tests/support): if these fail, every test that
talks to IMAP or SMTP would fail for reasons that have nothing to do with MailFlow."""

from __future__ import annotations

import email
import smtplib
import socket
import ssl
import time
import uuid

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError

from tests.support.mailstack import MailStack, client_context
from tests.support.negative import NegativeSmtp, legacy_client_context

pytestmark = pytest.mark.mailstack

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@other.test"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def message(sender: str, to: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\nHello.\r\n").encode()


def smtp(ms: MailStack, kind: str) -> smtplib.SMTP:
    """An SMTP connection over TLS: "submission" (STARTTLS) or "smtps" (implicit TLS)."""
    # local_hostname: smtplib's default calls getfqdn(), which may do DNS.
    if kind == "smtps":
        return smtplib.SMTP_SSL(ms.host, ms.smtps_port, local_hostname="localhost", timeout=10,
                                context=ms.client_context())
    s = smtplib.SMTP(ms.host, ms.submission_port, local_hostname="localhost", timeout=10)
    s.starttls(context=ms.client_context())
    return s


def fetch(ms: MailStack, user: str, criteria: list, folder: str = "INBOX") -> list:
    """Messages in user's folder matching an IMAP SEARCH, as (message, flags) pairs."""
    with ms.imap(user) as c:
        c.select_folder(folder, readonly=True)
        found = c.fetch(c.search(criteria), ["RFC822", "FLAGS"]).values()
        return [(email.message_from_bytes(d[b"RFC822"]), d[b"FLAGS"]) for d in found]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("kind", ["submission", "smtps"])
def test_send_lands_in_recipient_inbox(mailstack, kind, mechanism):
    subject = unique(f"{kind}-{mechanism}")
    with smtp(mailstack, kind) as s:
        s.ehlo()
        s.user, s.password = ALICE, mailstack.users[ALICE]
        s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"), initial_response_ok=False)
        s.sendmail(ALICE, [BOB], message(ALICE, BOB, subject))
    [(msg, _)] = fetch(mailstack, BOB, ["SUBJECT", subject])
    assert msg["Return-Path"] == f"<{ALICE}>"
    assert any("with ESMTPSA" in line for line in msg.get_all("Received"))
    # Like most providers (not Gmail), the server keeps no Sent copy by default.
    assert fetch(mailstack, ALICE, ["SUBJECT", subject], folder="Sent") == []


def test_multi_recipient_cross_domain(mailstack):
    # One LMTP transaction with two recipients: needs one reply per recipient after DATA.
    subject = unique("multi")
    with smtp(mailstack, "smtps") as s:
        s.login(ALICE, mailstack.users[ALICE])
        s.sendmail(ALICE, [BOB, CAROL], message(ALICE, f"{BOB}, {CAROL}", subject))
    assert len(fetch(mailstack, BOB, ["SUBJECT", subject])) == 1
    assert len(fetch(mailstack, CAROL, ["SUBJECT", subject])) == 1


def test_deliver_injects_inbound_mail(mailstack):
    subject = unique("inbound")
    raw = message("news@external.test", BOB, subject) + b".starts-with-dot\r\n"
    mailstack.deliver(BOB, raw.replace(b"\r\n", b"\n"), mail_from="news@external.test")
    [(msg, flags)] = fetch(mailstack, BOB, ["SUBJECT", subject])
    assert msg["Return-Path"] == "<news@external.test>"
    assert msg["Delivered-To"] == BOB
    assert msg.get_payload().splitlines()[-1] == ".starts-with-dot"  # LMTP dot-stuffing
    assert b"\\Seen" not in flags


def test_imaps_negotiates_modern_tls(mailstack):
    with mailstack.imap(ALICE) as c:
        assert c.socket().version() in ("TLSv1.2", "TLSv1.3")
    capped = mailstack.client_context()
    capped.maximum_version = ssl.TLSVersion.TLSv1_2
    with IMAPClient(mailstack.host, mailstack.imaps_port, ssl_context=capped, timeout=10) as c:
        assert c.socket().version() == "TLSv1.2"


def test_plain_imap_port_refuses_login_before_starttls(mailstack):
    with IMAPClient(mailstack.host, mailstack.imap_port, ssl=False, timeout=10) as c:
        assert {b"STARTTLS", b"LOGINDISABLED"} <= set(c.capabilities())
        with pytest.raises(LoginError, match="PRIVACYREQUIRED"):
            c.login(ALICE, mailstack.users[ALICE])
        c.starttls(mailstack.client_context())
        c.login(ALICE, mailstack.users[ALICE])


def test_wrong_password_fails_without_lasting_penalty(mailstack):
    with IMAPClient(mailstack.host, mailstack.imaps_port, ssl_context=mailstack.client_context(),
                    timeout=10) as c, pytest.raises(LoginError):
        c.login(ALICE, "wrong-password")
    with smtp(mailstack, "submission") as s, pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(ALICE, "wrong-password")
    # With anvil's auth penalty left on, this next good login would wait 2-15 s.
    started = time.monotonic()
    mailstack.imap(ALICE).logout()
    assert time.monotonic() - started < 1.5


def test_folders_exist_with_special_use(mailstack):
    with mailstack.imap(ALICE) as c:
        assert {name for _, _, name in c.list_folders()} >= {"INBOX", "Sent", "Spam", "Drafts",
                                                               "Trash"}
        assert c.find_special_folder(b"\\Junk") == "Spam"
        assert c.find_special_folder(b"\\Sent") == "Sent"
        assert c.find_special_folder(b"\\Drafts") == "Drafts"
        assert c.find_special_folder(b"\\Trash") == "Trash"


def test_unknown_recipient_bounces_to_sender(mailstack):
    subject = unique("bounce")
    with smtp(mailstack, "submission") as s:
        s.login(ALICE, mailstack.users[ALICE])
        s.sendmail(ALICE, ["ghost@example.test"], message(ALICE, "ghost@example.test", subject))
    [(dsn, _)] = fetch(mailstack, ALICE, ["HEADER", "In-Reply-To", f"<{subject}@example.test>"])
    assert dsn["Return-Path"] == "<>"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    status = dsn.as_bytes()
    assert b"Final-Recipient: rfc822; ghost@example.test" in status
    assert b"Status: 5.1.1" in status


def test_foreign_mail_from_is_refused(mailstack):
    with smtp(mailstack, "smtps") as s:
        s.login(ALICE, mailstack.users[ALICE])
        assert s.mail(BOB)[0] == 553


def test_submission_offers_auth_only_after_starttls(mailstack):
    with smtplib.SMTP(mailstack.host, mailstack.submission_port, local_hostname="localhost",
                      timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        assert s.mail(ALICE)[0] == 530
        s.starttls(context=mailstack.client_context())
        s.ehlo()
        assert set(s.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN"}
        assert s.mail(ALICE)[0] == 530  # still no AUTH


def test_user_added_at_runtime(mailstack):
    dave = f"{unique('dave')}@example.test"
    mailstack.add_users({dave: "dave-app-password"})
    subject = unique("welcome")
    mailstack.deliver(dave, message(ALICE, dave, subject))
    assert len(fetch(mailstack, dave, ["SUBJECT", subject])) == 1


def test_gmail_like_options():
    gmail_folders = {"[Gmail]/Sent Mail": "\\Sent", "[Gmail]/Spam": "\\Junk"}
    with MailStack({ALICE: "a", BOB: "b"}, save_sent_copy=True, unknown_recipient="reject",
                   enforce_sender=False, folders=gmail_folders) as ms:
        subject = unique("gmail")
        with smtp(ms, "smtps") as s:
            s.login(ALICE, "a")
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                s.sendmail(ALICE, ["ghost@example.test"], message(ALICE, "ghost", subject))
            assert refused.value.recipients["ghost@example.test"][0] == 550
            s.sendmail("alias@example.test", [BOB], message("alias@example.test", BOB, subject))
            s.sendmail(ALICE, [BOB], message(ALICE, BOB, subject))
        assert len(fetch(ms, BOB, ["SUBJECT", subject])) == 2
        [(_, flags)] = fetch(ms, ALICE, ["SUBJECT", subject], folder="[Gmail]/Sent Mail")
        assert b"\\Seen" not in flags
        assert ms.log_errors() == []


def legacy_handshake(server, how: str, ctx: ssl.SSLContext) -> str:
    """Handshake with a legacy endpoint; return the negotiated TLS version."""
    if how == "imap-starttls":
        c = IMAPClient(server.host, server.starttls_port, ssl=False, timeout=10)
        c.starttls(ctx)  # a failed handshake has already closed the socket
        try:
            return c.socket().version()
        finally:
            c.shutdown()
    if how == "smtp-starttls":
        with smtplib.SMTP(server.host, server.port, local_hostname="localhost", timeout=10) as s:
            s.starttls(context=ctx)
            return s.sock.version()
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server.host) as tls:
            return tls.version()


@pytest.mark.parametrize("fixture, how", [
    ("legacy_tls_imap", "implicit"),
    ("legacy_tls_imap", "imap-starttls"),
    ("legacy_smtps", "implicit"),
    ("legacy_starttls_smtp", "smtp-starttls"),
])
def test_tls11_only_endpoints_refuse_modern_clients(request, fixture, how):
    server = request.getfixturevalue(fixture)
    with pytest.raises(ssl.SSLError):
        legacy_handshake(server, how, client_context(server.cafile))
    # Control: a permissive client gets TLS 1.1, so the refusal above is about the version.
    assert legacy_handshake(server, how, legacy_client_context(server.cafile)) == "TLSv1.1"


def test_nostarttls_smtp_cannot_starttls(nostarttls_smtp):
    with smtplib.SMTP(nostarttls_smtp.host, nostarttls_smtp.port, local_hostname="localhost",
                      timeout=10) as s:
        s.ehlo()
        assert s.has_extn("auth") and not s.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.starttls(context=client_context(nostarttls_smtp.cafile))


def test_nostarttls_smtp_records_careless_logins():
    server = NegativeSmtp("nostarttls").start()
    try:
        with smtplib.SMTP(server.host, server.port, local_hostname="localhost", timeout=10) as s:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login(ALICE, "sent-in-clear")
        assert set(server.auth_attempts) == {ALICE}  # smtplib tries PLAIN, then LOGIN
    finally:
        server.stop()


def test_nostarttls_imap_listener_cannot_starttls(mailstack):
    with IMAPClient(mailstack.nostarttls_host, mailstack.imap_nostarttls_port, ssl=False,
                    timeout=10) as c:
        # Neither STARTTLS nor LOGINDISABLED: a careless client would log in in clear.
        assert not {b"STARTTLS", b"LOGINDISABLED"} & set(c.capabilities())
        with pytest.raises(CapabilityError):
            c.starttls(mailstack.client_context())
