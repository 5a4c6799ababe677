"""The SMTP/IMAP adapters against real servers: TLS 1.2+, verified certificates, STARTTLS
required, never a password in clear; and each failure named clearly."""

from __future__ import annotations

import hashlib
import select
import socket
import ssl
import time
from email.message import EmailMessage

import smtplib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.mail import imap, smtp
from appliance.mail.tls import TlsPolicy, TransportError, normalize_fingerprint

pytestmark = pytest.mark.mailstack

ALICE, BOB = "alice@example.test", "bob@example.test"


def ca_policy(ms) -> TlsPolicy:
    return TlsPolicy(ca_pem=ms.cafile.read_text())


def leaf_fingerprint(host: str, port: int) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, subject
    msg["Message-ID"] = f"<{subject}@example.test>"
    msg.set_content("hello")
    return bytes(msg)


def wait_for_subject(ms, user, subject, timeout=5.0):
    deadline = time.monotonic() + timeout
    client = ms.imap(user)
    try:
        client.select_folder("INBOX", readonly=True)
        while time.monotonic() < deadline:
            if client.search(["SUBJECT", subject]):
                return True
            time.sleep(0.05)
            client.noop()
        return False
    finally:
        client.logout()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_smtp_sends_over_tls_with_a_private_ca(mailstack, security):
    port = mailstack.submission_port if security == "starttls" else mailstack.smtps_port
    endpoint = smtp.Endpoint(mailstack.host, port, security, ca_policy(mailstack))
    subject = f"transport-{security}-{time.monotonic_ns()}"
    with smtp.SmtpSession(endpoint, ALICE, mailstack.users[ALICE], "example.test") as session:
        session.send(ALICE, [BOB], message(subject))
    assert wait_for_subject(mailstack, BOB, subject)


def test_smtp_gives_the_wait_for_each_mail_from_reply_to_the_caller(mailstack):
    """while_waiting runs once per message, after MAIL FROM went out and before its reply is
    read: inside it, the server's reply arrives on a socket nobody has read yet."""
    endpoint = smtp.Endpoint(mailstack.host, mailstack.submission_port, "starttls", ca_policy(mailstack))
    subjects = [f"wait-{i}-{time.monotonic_ns()}" for i in range(3)]
    replies_waiting = []
    with smtp.SmtpSession(endpoint, ALICE, mailstack.users[ALICE], "example.test") as session:
        sock = session._smtp.sock

        def wait() -> None:
            readable = sock.pending() or select.select([sock], [], [], 5)[0]
            replies_waiting.append(bool(readable))

        for subject in subjects:
            session.send(ALICE, [BOB], message(subject), while_waiting=wait)
    assert replies_waiting == [True, True, True]
    assert all(wait_for_subject(mailstack, BOB, subject) for subject in subjects)


@pytest.mark.parametrize("where", ["from", "to"])
def test_a_line_break_in_an_address_never_becomes_an_smtp_command(mailstack, where):
    endpoint = smtp.Endpoint(mailstack.host, mailstack.submission_port, "starttls", ca_policy(mailstack))
    subject = f"smuggle-{where}-{time.monotonic_ns()}"
    hostile = "alice@example.test>\r\nRCPT TO:<bob@example.test"
    with smtp.SmtpSession(endpoint, ALICE, mailstack.users[ALICE], "example.test") as session:
        with pytest.raises(smtp.SmtpRejected, match="line break") as refused:
            if where == "from":
                session.send(hostile, [ALICE], message(subject))
            else:
                session.send(ALICE, [hostile], message(subject))
        assert refused.value.permanent  # the engine records the message as failed, with this reason
        after = f"after-{where}-{time.monotonic_ns()}"
        session.send(ALICE, [ALICE], message(after))  # nothing was half-written: the session goes on
    assert wait_for_subject(mailstack, ALICE, after)
    # smtplib's own parse would have sent it, to <alice@example.test>
    assert not any(wait_for_subject(mailstack, user, subject, timeout=0.3) for user in (ALICE, BOB))


ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
ADDRESSES = st.one_of(
    st.builds(lambda local, domain: f"{'.'.join(local)}@{'.'.join(domain)}",
              st.lists(ATOM, min_size=1, max_size=3),
              st.lists(st.text(alphabet="abz09-", min_size=1, max_size=8), min_size=1, max_size=3)),
    st.text(max_size=40),  # anything at all: the slow path must still match smtplib
    st.sampled_from(["Bob <bob@x.test>", "<a@b.test>", '"odd name"@x.test', "a..b@x.test", "a@b", "", "@"]))


@settings(max_examples=400, deadline=None)
@given(ADDRESSES)
def test_smtp_paths_are_written_as_smtplib_writes_them(address):
    if any(c in address for c in "\r\n\0"):
        with pytest.raises(smtp.SmtpRejected):
            smtp.smtp_path(address)
    else:
        assert smtp.smtp_path(address) == smtplib.quoteaddr(address)


def test_smtp_with_a_pinned_certificate(mailstack):
    pin = leaf_fingerprint(mailstack.host, mailstack.smtps_port)
    good = smtp.Endpoint(mailstack.host, mailstack.smtps_port, "ssl", TlsPolicy(pinned_sha256=pin))
    smtp.check(good, ALICE, mailstack.users[ALICE])
    bad = smtp.Endpoint(mailstack.host, mailstack.smtps_port, "ssl", TlsPolicy(pinned_sha256="0" * 64))
    with pytest.raises(TransportError) as err:
        smtp.check(bad, ALICE, mailstack.users[ALICE])
    assert err.value.code == "certificate_untrusted"


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_smtp_refuses_an_untrusted_certificate(mailstack, security):
    port = mailstack.submission_port if security == "starttls" else mailstack.smtps_port
    endpoint = smtp.Endpoint(mailstack.host, port, security)  # system trust store: test CA unknown
    with pytest.raises(TransportError) as err:
        smtp.check(endpoint, ALICE, mailstack.users[ALICE])
    assert err.value.code == "certificate_untrusted" and "not trusted" in err.value.message


def test_smtp_wrong_password(mailstack):
    endpoint = smtp.Endpoint(mailstack.host, mailstack.submission_port, "starttls", ca_policy(mailstack))
    with pytest.raises(TransportError) as err:
        smtp.check(endpoint, ALICE, "not-the-app-password")
    assert err.value.code == "auth_failed"


def test_smtp_never_authenticates_without_starttls(nostarttls_smtp):
    endpoint = smtp.Endpoint(nostarttls_smtp.host, nostarttls_smtp.port, "starttls",
                             TlsPolicy(ca_pem=nostarttls_smtp.cafile.read_text()))
    with pytest.raises(TransportError) as err:
        smtp.check(endpoint, ALICE, "secret-app-password")
    assert err.value.code == "starttls_not_offered"
    assert nostarttls_smtp.auth_attempts == []  # the password never left


@pytest.mark.parametrize("fixture, security", [("legacy_smtps", "ssl"), ("legacy_starttls_smtp", "starttls")])
def test_smtp_refuses_tls_1_1(request, fixture, security):
    server = request.getfixturevalue(fixture)
    endpoint = smtp.Endpoint(server.host, server.port, security, TlsPolicy(ca_pem=server.cafile.read_text()))
    with pytest.raises(TransportError) as err:
        smtp.check(endpoint, ALICE, "secret-app-password")
    assert err.value.code == "tls_failed"
    assert server.auth_attempts == []


def test_unreachable_host(mailstack):
    with socket.socket() as s:
        s.bind((mailstack.host, 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(TransportError) as err:
            smtp.check(smtp.Endpoint(mailstack.host, port, "ssl", timeout=3), ALICE, "x")
    assert err.value.code == "host_unreachable"


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imap_logs_in_and_finds_special_folders(mailstack, security):
    port = mailstack.imaps_port if security == "ssl" else mailstack.imap_port
    folders = imap.check(smtp.Endpoint(mailstack.host, port, security, ca_policy(mailstack)),
                         ALICE, mailstack.users[ALICE])
    assert folders.inbox == "INBOX" and folders.sent == "Sent" and folders.junk == "Spam"


def test_imap_wrong_password_and_untrusted_certificate(mailstack):
    with pytest.raises(TransportError) as err:
        imap.check(smtp.Endpoint(mailstack.host, mailstack.imaps_port, "ssl", ca_policy(mailstack)),
                   ALICE, "wrong-password")
    assert err.value.code == "auth_failed"
    with pytest.raises(TransportError) as err:
        imap.check(smtp.Endpoint(mailstack.host, mailstack.imaps_port, "ssl"), ALICE, mailstack.users[ALICE])
    assert err.value.code == "certificate_untrusted"


def test_imap_never_logs_in_without_starttls(mailstack):
    endpoint = smtp.Endpoint(mailstack.nostarttls_host, mailstack.imap_nostarttls_port, "starttls",
                             ca_policy(mailstack))
    with pytest.raises(TransportError) as err:
        imap.check(endpoint, ALICE, mailstack.users[ALICE])
    assert err.value.code == "starttls_not_offered"


@pytest.mark.parametrize("attr, security", [("port", "ssl"), ("starttls_port", "starttls")])
def test_imap_refuses_tls_1_1(legacy_tls_imap, attr, security):
    endpoint = smtp.Endpoint(legacy_tls_imap.host, getattr(legacy_tls_imap, attr), security,
                             TlsPolicy(ca_pem=legacy_tls_imap.cafile.read_text()))
    with pytest.raises(TransportError) as err:
        imap.check(endpoint, ALICE, "secret")
    assert err.value.code == "tls_failed"


def test_folder_fallback_names():
    class FakeListing(imap.ImapSession):
        def __init__(self, listing):
            self.client = type("C", (), {"list_folders": lambda _self: listing})()

    gmail = FakeListing([((b"\\HasNoChildren",), b"/", "INBOX"), ((), b"/", "[Gmail]/Sent Mail"),
                         ((), b"/", "[Gmail]/Spam")]).folders()
    assert (gmail.sent, gmail.junk) == ("[Gmail]/Sent Mail", "[Gmail]/Spam")
    outlook = FakeListing([((), b"/", "INBOX"), ((), b"/", "Sent Items"), ((), b"/", "Junk Email")]).folders()
    assert (outlook.sent, outlook.junk) == ("Sent Items", "Junk Email")


@pytest.mark.parametrize("name", ["INBOX\r\nA1 DELETE INBOX", "Spam\n", "a\x00b", "", "x" * 256])
def test_folder_names_with_control_characters_are_refused(name):
    with pytest.raises(ValueError):
        imap.validate_folder_name(name)


def test_fingerprint_normalisation():
    fp = "AB:" * 31 + "AB"
    assert normalize_fingerprint(fp) == "ab" * 32
    with pytest.raises(ValueError):
        normalize_fingerprint("abc")
