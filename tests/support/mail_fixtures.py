"""pytest plugin: session-scoped real mail servers (see tests/support/mailstack.py).

Load it with `pytest_plugins = ["tests.support.mail_fixtures"]` in tests/conftest.py.
Each server is started once per session, from the main thread (Dovecot's --pdeathsig is tied
to the thread that started it).
"""

from __future__ import annotations

import os

import pytest

from .dovecot import DOVECOT
from .mailstack import MailStack
from .negative import LegacyTlsDovecot, NegativeSmtp

USERS = {
    "alice@example.test": "alice-app-password",
    "bob@example.test": "bob-app-password",
    "carol@other.test": "carol-app-password",
}


def _require_dovecot() -> None:
    if not os.path.exists(DOVECOT):
        pytest.fail(f"{DOVECOT} is missing: run `make test`, which installs dovecot-imapd and "
                    "dovecot-lmtpd", pytrace=False)


def _stop_checking_log(server) -> None:
    errors = server.log_errors()  # read first: stop() removes the temp dir
    server.stop()
    assert not errors, "dovecot.log has errors:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def mailstack():
    """Dovecot + aiosmtpd with alice@example.test, bob@example.test and carol@other.test
    (passwords in mailstack.users)."""
    _require_dovecot()
    stack = MailStack(users=USERS).start()
    yield stack
    _stop_checking_log(stack)


@pytest.fixture(scope="session")
def legacy_tls_imap():
    """A Dovecot offering only TLS 1.0/1.1 (IMAPS on .port, STARTTLS on .starttls_port)."""
    _require_dovecot()
    server = LegacyTlsDovecot().start()
    yield server
    _stop_checking_log(server)


def _negative_smtp(mode: str):
    server = NegativeSmtp(mode).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nostarttls_smtp():
    """SMTP whose EHLO offers AUTH but no STARTTLS."""
    yield from _negative_smtp("nostarttls")


@pytest.fixture(scope="session")
def legacy_smtps():
    """SMTPS (implicit TLS) offering only TLS 1.0/1.1."""
    yield from _negative_smtp("legacy-smtps")


@pytest.fixture(scope="session")
def legacy_starttls_smtp():
    """SMTP whose STARTTLS offers only TLS 1.0/1.1."""
    yield from _negative_smtp("legacy-starttls")
