"""People: the first owner, invitations, sign-in, roles, passwords, disabling."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from ..db import Database, settings_repo, setup_tokens_repo, users_repo
from ..db.timefmt import from_iso, to_iso, utcnow_iso
from . import audit, passwords
from .audit import Actor
from .authz import RANK, ROLES, Principal, may_assign, outranks
from .errors import AuthenticationFailed, Conflict, Gone, NotFound, PermissionDenied, ValidationError
from .setup import SETUP_DONE

_EMAIL = re.compile(r"^[^@\s\"<>(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def email_problem(email: str) -> str | None:
    if not email:
        return "Enter an email address."
    if len(email) > 254 or not _EMAIL.match(email):
        return "Enter a valid email address, like name@example.com."
    return None


def public(user) -> dict:
    """A user as the API and UI show it: never the password hash or token version."""
    return {"id": user["id"], "email": user["email"], "name": user["name"], "role": user["role"],
            "status": user["status"], "has_password": bool(user["password_hash"]),
            "created_at": user["created_at"], "last_login_at": user["last_login_at"]}


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_new_account(email: str, password: str | None, name: str) -> None:
    problems = {}
    if p := email_problem(email):
        problems["email"] = p
    if password is not None and (p := passwords.password_problem(password)):
        problems["password"] = p
    if len(name) > 200:
        problems["name"] = "Use at most 200 characters."
    if problems:
        raise ValidationError(problems)


def create_owner_with_setup_token(db: Database, token: str, *, email: str, name: str, password: str,
                                  ip: str | None, cost: int) -> dict:
    """The one-time setup link creates the owner. The token is consumed by a conditional
    UPDATE in the same transaction, so of two racing submissions exactly one succeeds."""
    email, name = normalize_email(email), name.strip()
    _check_new_account(email, password, name)
    password_hash = passwords.hash_password(password, cost)  # slow: outside the write lock
    now = utcnow_iso()
    with db.transaction() as conn:
        row = setup_tokens_repo.find(conn, _token_hash(token))
        if row is None:
            raise NotFound("This setup link is not valid.", code="setup_link_invalid")
        if row["used_at"] is not None or users_repo.owner_exists(conn):
            raise Gone("This setup link has already been used.", code="setup_link_used")
        if from_iso(row["expires_at"]) <= datetime.now(timezone.utc):
            raise Gone("This setup link has expired. Restart the service for a new one.",
                       code="setup_link_expired")
        if not setup_tokens_repo.mark_used(conn, row["id"], now):
            raise Gone("This setup link has already been used.", code="setup_link_used")
        user_id = users_repo.insert(conn, email=email, name=name, role="owner", status="active",
                                    password_hash=password_hash, now=now)
        settings_repo.put(conn, SETUP_DONE, now)
        audit.record(conn, Actor("user", user_id, email, ip), "user.owner_created",
                     target_type="user", target_id=user_id, metadata={"via": "setup_link"})
        return public(users_repo.by_id(conn, user_id))


def create_admin(db: Database, *, email: str, password: str, name: str = "", cost: int) -> dict:
    """`mailflow create-admin`: the owner when there is none yet, otherwise an admin."""
    email, name = normalize_email(email), name.strip()
    _check_new_account(email, password, name)
    password_hash = passwords.hash_password(password, cost)
    now = utcnow_iso()
    with db.transaction() as conn:
        if users_repo.by_email(conn, email):
            raise Conflict(f"A user with the email {email} already exists.", code="email_taken")
        role = "admin" if users_repo.owner_exists(conn) else "owner"
        user_id = users_repo.insert(conn, email=email, name=name, role=role, status="active",
                                    password_hash=password_hash, now=now)
        settings_repo.put(conn, SETUP_DONE, settings_repo.get(conn, SETUP_DONE) or now)
        audit.record(conn, Actor.system("cli"), "user.created", target_type="user", target_id=user_id,
                     metadata={"email": email, "role": role, "via": "create-admin"})
        return public(users_repo.by_id(conn, user_id))


def authenticate(db: Database, email: str, password: str, ip: str | None) -> dict:
    """Check a password sign-in; audit success and failure alike. Unknown emails cost a real
    bcrypt check too, so the response time does not tell which accounts exist."""
    email = normalize_email(email)
    user = users_repo.by_email(db.connection(), email) if email else None
    if user is None or not user["password_hash"]:
        passwords.dummy_check(password or "")
        ok = False
    else:
        ok = passwords.verify_password(password or "", user["password_hash"])
    if not ok or user["status"] != "active":
        reason = "bad_credentials" if not ok else f"user_{user['status']}"
        audit.record_now(db, Actor.anonymous(ip, email[:254] or "anonymous"), "auth.login_failed",
                         target_type="user" if user else None, target_id=user["id"] if user else None,
                         metadata={"reason": reason})
        if ok:  # right password, disabled account: say so, the person knows the password
            raise AuthenticationFailed("This account is disabled. Ask an admin.", code="account_disabled")
        raise AuthenticationFailed("Wrong email or password.", code="bad_credentials")
    with db.transaction() as conn:
        users_repo.touch_login(conn, user["id"], utcnow_iso())
        audit.record(conn, Actor("user", user["id"], user["email"], ip), "auth.login",
                     target_type="user", target_id=user["id"], metadata={"method": "password"})
        return dict(users_repo.by_id(conn, user["id"]))


def record_login(db: Database, user_id: int, ip: str | None, method: str) -> dict:
    """A sign-in that was verified elsewhere (OIDC): audit it and return the user row."""
    with db.transaction() as conn:
        user = users_repo.by_id(conn, user_id)
        users_repo.touch_login(conn, user_id, utcnow_iso())
        audit.record(conn, Actor("user", user_id, user["email"], ip), "auth.login",
                     target_type="user", target_id=user_id, metadata={"method": method})
        return dict(users_repo.by_id(conn, user_id))


def logout(db: Database, principal: Principal) -> None:
    if principal.session is None:
        return
    claims = principal.session
    with db.transaction() as conn:
        users_repo.revoke_token(conn, claims["jti"],
                                to_iso(datetime.fromtimestamp(claims["exp"], timezone.utc)))
        audit.record(conn, principal.actor(), "auth.logout", target_type="user", target_id=principal.user_id)


def get(db: Database, user_id: int) -> dict:
    user = users_repo.by_id(db.connection(), user_id)
    if user is None:
        raise NotFound("No such user.")
    return public(user)


def list_users(db: Database, *, after_id: int = 0, limit: int = 50) -> list[dict]:
    return [public(u) for u in users_repo.list_page(db.connection(), after_id=after_id, limit=limit)]


def invite(db: Database, principal: Principal, *, email: str, role: str, name: str = "",
           ttl_hours: int = 72) -> tuple[dict, str]:
    """Create an invited user and a one-time link token (shown once; only its hash is kept)."""
    principal.require("admin", "admin")
    email, name = normalize_email(email), (name or "").strip()
    _check_new_account(email, None, name)
    if role not in RANK:
        raise ValidationError({"role": f"Choose one of: {', '.join(r for r in ROLES if r != 'owner')}."})
    if not may_assign(principal.role, role):
        raise PermissionDenied(f"You cannot invite someone as {role}.", code="role_not_assignable")
    token = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        if users_repo.by_email(conn, email):
            raise Conflict(f"A user with the email {email} already exists.", code="email_taken")
        user_id = users_repo.insert(conn, email=email, name=name, role=role, status="invited",
                                    password_hash=None, now=to_iso(now))
        users_repo.insert_invite(conn, user_id=user_id, token_hash=_token_hash(token),
                                 created_by=principal.user_id, now=to_iso(now),
                                 expires_at=to_iso(now + timedelta(hours=ttl_hours)))
        audit.record(conn, principal.actor(), "user.invited", target_type="user", target_id=user_id,
                     metadata={"email": email, "role": role})
        return public(users_repo.by_id(conn, user_id)), token


def invite_state(db: Database, token: str) -> dict:
    conn = db.connection()
    invite_row = users_repo.invite_by_hash(conn, _token_hash(token))
    if invite_row is None:
        raise NotFound("This invitation link is not valid.", code="invite_invalid")
    if invite_row["used_at"] is not None:
        raise Gone("This invitation has already been used. Sign in instead.", code="invite_used")
    if from_iso(invite_row["expires_at"]) <= datetime.now(timezone.utc):
        raise Gone("This invitation has expired. Ask an admin for a new one.", code="invite_expired")
    return public(users_repo.by_id(conn, invite_row["user_id"]))


def accept_invite(db: Database, token: str, *, password: str, name: str, ip: str | None,
                  cost: int) -> dict:
    user = invite_state(db, token)
    if p := passwords.password_problem(password):
        raise ValidationError({"password": p})
    password_hash = passwords.hash_password(password, cost)
    now = utcnow_iso()
    with db.transaction() as conn:
        invite_row = users_repo.invite_by_hash(conn, _token_hash(token))
        if not users_repo.use_invite(conn, invite_row["id"], now):
            raise Gone("This invitation has already been used. Sign in instead.", code="invite_used")
        users_repo.set_password(conn, user["id"], password_hash, now)
        fields = {"status": "active"}
        if name.strip():
            fields["name"] = name.strip()[:200]
        users_repo.update_fields(conn, user["id"], now, **fields)
        audit.record(conn, Actor("user", user["id"], user["email"], ip), "user.invite_accepted",
                     target_type="user", target_id=user["id"])
        return public(users_repo.by_id(conn, user["id"]))


def update(db: Database, principal: Principal, user_id: int, *, role: str | None = None,
           status: str | None = None, name: str | None = None) -> dict:
    """Change a user's role, status (active/disabled) or name. Role and status changes end
    the user's sessions at once. Nobody can change the owner but the owner's own name."""
    principal.require("admin", "admin")
    now = utcnow_iso()
    with db.transaction() as conn:
        target = users_repo.by_id(conn, user_id)
        if target is None:
            raise NotFound("No such user.")
        if target["id"] == principal.user_id and (role or status):
            raise PermissionDenied("You cannot change your own role or status.", code="self_change")
        if (role or status) and not outranks(principal.role, target["role"]):
            raise PermissionDenied(f"You cannot change a user with the {target['role']} role.",
                                   code="target_outranks")
        changes = {}
        if role is not None and role != target["role"]:
            if role not in RANK or not may_assign(principal.role, role):
                raise PermissionDenied(f"You cannot assign the {role} role.", code="role_not_assignable")
            changes["role"] = role
        if status is not None and status != target["status"]:
            if status not in ("active", "disabled") or target["status"] == "invited" and status == "active":
                raise ValidationError({"status": "Choose active or disabled."})
            changes["status"] = status
        if name is not None and name.strip() != target["name"]:
            if len(name.strip()) > 200:
                raise ValidationError({"name": "Use at most 200 characters."})
            changes["name"] = name.strip()
        if not changes:
            return public(target)
        users_repo.update_fields(conn, user_id, now, **changes)
        if "role" in changes or "status" in changes:
            users_repo.bump_token_version(conn, user_id, now)
        action = "user.disabled" if changes.get("status") == "disabled" else \
            "user.enabled" if changes.get("status") == "active" else \
            "user.role_changed" if "role" in changes else "user.updated"
        audit.record(conn, principal.actor(), action, target_type="user", target_id=user_id,
                     metadata={k: {"from": target[k], "to": v} for k, v in changes.items()})
        return public(users_repo.by_id(conn, user_id))


def delete(db: Database, principal: Principal, user_id: int) -> None:
    principal.require("admin", "admin")
    with db.transaction() as conn:
        target = users_repo.by_id(conn, user_id)
        if target is None:
            raise NotFound("No such user.")
        if target["id"] == principal.user_id:
            raise PermissionDenied("You cannot delete yourself.", code="self_change")
        if not outranks(principal.role, target["role"]):
            raise PermissionDenied(f"You cannot delete a user with the {target['role']} role.",
                                   code="target_outranks")
        users_repo.delete(conn, user_id)
        audit.record(conn, principal.actor(), "user.deleted", target_type="user", target_id=user_id,
                     metadata={"email": target["email"], "role": target["role"]})


def change_password(db: Database, principal: Principal, *, current_password: str, new_password: str,
                    cost: int) -> None:
    """Every earlier token of this user stops working (the token version moves on). An account
    made by single sign-on has no password yet: it sets its first one without a current one."""
    user = users_repo.by_id(db.connection(), principal.user_id)
    if user["password_hash"] and not passwords.verify_password(current_password or "", user["password_hash"]):
        audit.record_now(db, principal.actor(), "auth.password_change_failed", target_type="user",
                         target_id=user["id"])
        raise ValidationError({"current_password": "This is not your current password."})
    if p := passwords.password_problem(new_password or ""):
        raise ValidationError({"new_password": p})
    password_hash = passwords.hash_password(new_password, cost)
    with db.transaction() as conn:
        users_repo.set_password(conn, user["id"], password_hash, utcnow_iso())
        audit.record(conn, principal.actor(), "auth.password_changed", target_type="user", target_id=user["id"])


def sign_out_everywhere(db: Database, principal: Principal) -> None:
    with db.transaction() as conn:
        users_repo.bump_token_version(conn, principal.user_id, utcnow_iso())
        audit.record(conn, principal.actor(), "auth.signed_out_everywhere", target_type="user",
                     target_id=principal.user_id)


def user_row(db: Database, user_id: int):
    return users_repo.by_id(db.connection(), user_id)
