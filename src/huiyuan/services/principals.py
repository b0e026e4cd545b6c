"""Who is calling: an owner (the platform or a store) holding an API key with scopes.

Keys look like ``hy_<prefix>_<secret>``. Only a SHA-256 of the whole key is stored (the secret
has 192 bits of entropy, so a slow password hash buys nothing); the prefix finds the row and the
hashes are compared in constant time. ``admin`` implies ``write`` and ``read``; ``write`` does not
imply ``read`` — an event sender need not read profiles.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from huiyuan.db import owners_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.errors import AdminError, DomainError, ErrorKind, forbidden, not_found
from huiyuan.services.context import PLATFORM_OWNER, Services


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    owner_id: str
    owner_kind: str
    scopes: frozenset[Scope]
    key_prefix: str

    @property
    def is_platform(self) -> bool:
        return self.owner_kind == "platform"

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.has(scope):
            raise forbidden(AdminError.SCOPE_MISSING, f"this API key lacks the {scope} scope")

    @property
    def actor(self) -> str:
        return f"key:{self.key_prefix}"


SYSTEM = Principal(PLATFORM_OWNER, "platform", frozenset({Scope.ADMIN}), "system")


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str
    prefix: str
    owner_id: str
    scopes: tuple[Scope, ...]


def parse_scopes(text: str) -> tuple[Scope, ...]:
    scopes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            scopes.append(Scope(part))
        except ValueError:
            raise DomainError(
                AdminError.SCOPE_MISSING,
                f"unknown scope {part!r}; use read, write or admin",
                kind=ErrorKind.INVALID,
                field="scopes",
            ) from None
    if not scopes:
        raise DomainError(
            AdminError.SCOPE_MISSING,
            "name at least one scope",
            kind=ErrorKind.INVALID,
            field="scopes",
        )
    return tuple(dict.fromkeys(scopes))


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    svc: Services, owner_id: str, scopes: tuple[Scope, ...], name: str, *, actor: str
) -> NewKey:
    prefix = secrets.token_hex(6)
    key = f"hy_{prefix}_{secrets.token_urlsafe(24)}"
    with svc.uow() as tx:
        if owners_repo.get_owner(tx.conn, owner_id) is None:
            raise not_found(AdminError.OWNER_NOT_FOUND, f"no owner {owner_id!r}")
        now = svc.now()
        owners_repo.add_api_key(
            tx.conn,
            owner_id=owner_id,
            name=name,
            prefix=prefix,
            secret_hash=_hash(key),
            scopes=",".join(scopes),
            at=now,
        )
        record_audit(
            tx.conn,
            actor=actor,
            action="api_key.created",
            subject=f"owner:{owner_id}",
            detail={"prefix": prefix, "scopes": list(scopes), "name": name},
            at=now,
        )
        tx.commit()
    return NewKey(key=key, prefix=prefix, owner_id=owner_id, scopes=scopes)


def revoke_api_key(svc: Services, prefix: str, *, actor: str) -> None:
    with svc.uow() as tx:
        if not owners_repo.revoke_api_key(tx.conn, prefix, svc.now()):
            raise not_found(AdminError.KEY_NOT_FOUND, f"no active API key {prefix!r}")
        record_audit(
            tx.conn,
            actor=actor,
            action="api_key.revoked",
            subject=f"key:{prefix}",
            detail={},
            at=svc.now(),
        )
        tx.commit()


class KeyResolver:
    """Turns a presented key into a principal, caching hits briefly (revocation takes effect
    within ``api_key_cache_seconds``)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._cache: dict[str, tuple[float, Principal]] = {}

    def cached(self, presented: str) -> Principal | None:
        """The principal of a key resolved a moment ago, from memory (no I/O: the API asks
        this on its event loop, and goes to the database, off the loop, only if it is not)."""
        return self._hit(_hash(presented))

    def resolve(self, presented: str) -> Principal | None:
        digest = _hash(presented)
        principal = self._hit(digest)
        if principal is not None:
            return principal
        principal = self._lookup(presented, digest)
        if principal is not None and self.svc.settings.api_key_cache_seconds > 0:
            expires = time.monotonic() + self.svc.settings.api_key_cache_seconds
            self._cache[digest] = (expires, principal)
        return principal

    def _hit(self, digest: str) -> Principal | None:
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def _lookup(self, presented: str, digest: str) -> Principal | None:
        parts = presented.split("_")
        if len(parts) < 3 or parts[0] != "hy":
            return None
        with self.svc.engine.connect() as conn:
            row = owners_repo.find_api_key(conn, parts[1])
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, digest):
            return None
        scopes = frozenset(Scope(s) for s in row.scopes.split(","))
        return Principal(row.owner_id, row.owner_kind, scopes, row.prefix)
