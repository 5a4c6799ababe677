"""Who is calling, and what they may do: roles for people, scopes for API keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from .audit import Actor
from .errors import PermissionDenied

ROLES = ("viewer", "member", "admin", "owner")
RANK = {role: rank for rank, role in enumerate(ROLES)}
SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user through a session, or an API key acting for its user."""

    user_id: int
    email: str
    role: str
    via: str  # "session" | "api_key"
    ip: str | None = None
    api_key_id: int | None = None
    api_key_prefix: str | None = None
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(SCOPES))
    session: dict | None = None  # the JWT claims, for a session

    def actor(self) -> Actor:
        if self.via == "api_key":
            return Actor("api_key", self.api_key_id, f"{self.email} (key {self.api_key_prefix})", self.ip)
        return Actor("user", self.user_id, self.email, self.ip)

    def has_role(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def require(self, role: str = "viewer", scope: str = "read") -> "Principal":
        if not self.has_role(role):
            raise PermissionDenied(f"This needs the {role} role.", code="role_required",
                                   details={"required_role": role})
        if scope not in self.scopes:
            raise PermissionDenied(f"This API key lacks the {scope!r} scope.", code="scope_required",
                                   details={"required_scope": scope})
        return self


def outranks(actor_role: str, target_role: str) -> bool:
    return RANK[actor_role] > RANK[target_role]


def may_assign(actor_role: str, new_role: str) -> bool:
    """The owner assigns any role but owner; an admin assigns only roles below admin."""
    if new_role == "owner" or new_role not in RANK:
        return False
    return actor_role == "owner" or RANK[new_role] < RANK[actor_role]
