"""Users and signed-in clients for tests: real bcrypt hashes, real sessions, the real Flask app."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.db import users_repo
from appliance.db.timefmt import utcnow_iso
from appliance.services import passwords

PASSWORD = "correct horse battery staple"
_HASH_CACHE: dict[str, str] = {}


def add_user(app, email: str, role: str = "member", password: str = PASSWORD, status: str = "active") -> int:
    """Insert a user directly (bcrypt cost 12 is real; one hash per password is reused)."""
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = passwords.hash_password(password, 12)
    with app.db.transaction() as conn:
        return users_repo.insert(conn, email=email, name=email.split("@")[0], role=role, status=status,
                                 password_hash=_HASH_CACHE[password], now=utcnow_iso())


@dataclass
class Session:
    client: object
    token: str
    csrf: str
    user: dict

    def headers(self, bearer: bool = False) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if bearer else {"X-CSRFToken": self.csrf}


def login(client, email: str, password: str = PASSWORD) -> Session:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    return Session(client, body["token"], body["csrf_token"], body["user"])


def signed_in(app, web, email: str, role: str = "member") -> Session:
    """That user (created with the role unless they exist already), signed in on a fresh client."""
    if users_repo.by_email(app.db.connection(), email) is None:
        add_user(app, email, role=role)
    return login(web.test_client(), email)
