"""Password hashing: bcrypt, cost 12 or more, any length.

bcrypt reads at most 72 bytes (and the bcrypt package refuses longer input), so the
password is first reduced with SHA-256 and base64-encoded: 44 bytes, no NUL bytes, every
character of a long passphrase still counts.
"""

from __future__ import annotations

import base64
import hashlib

import bcrypt

MIN_COST = 12
MIN_LENGTH = 12
MAX_LENGTH = 1024  # a bound on work per request, far above any real passphrase


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, cost: int = MIN_COST) -> str:
    if cost < MIN_COST:
        raise ValueError(f"bcrypt cost must be at least {MIN_COST}")
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=cost)).decode()


def verify_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode())
    except ValueError:
        return False


def hash_cost(hashed: str) -> int:
    """The cost factor recorded in a bcrypt hash ($2b$12$...)."""
    return int(hashed.split("$")[2])


# A real hash of a random password, checked against when an account does not exist, so a
# login for an unknown email takes as long as one for a known email (no user enumeration).
_DUMMY = None


def dummy_check(password: str) -> None:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(base64.b64encode(hashlib.sha256(b"mailflow-dummy").digest()).decode())
    verify_password(password, _DUMMY)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if not password.strip():
        return "The password cannot be only spaces."
    return None
