"""Who is calling: an owner (the platform or a store) holding an API key with scopes.

Keys look like ``hy_<prefix>_<secret>``. Only a SHA-256 of the whole key is stored (the secret
has 192 bits of entropy, so a slow password hash buys nothing); the prefix finds the row and the
hashes are compared in constant time. ``admin`` implies ``write`` and ``read``; ``write`` does not
imply ``read`` — an event sender need not read profiles.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from huiyuan.db import owners_repo
from huiyuan.db.audit_repo import record_audit
from huiyuan.domain.errors import AdminError, DomainError, ErrorKind, forbidden, not_found
from huiyuan.services.context import PLATFORM_OWNER, Services

log = logging.getLogger(__name__)


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


RETRY_SECONDS = 1.0  # after a failed refresh, before the next hit tries again


@dataclass(slots=True)
class _Cached:
    principal: Principal
    refresh_at: float  # past this, the next hit has the key looked up again, off the request
    expires: float  # past this, the key is looked up before it is trusted again
    refreshing: bool = False


class KeyResolver:
    """Turns a presented key into a principal, caching hits briefly (revocation takes effect
    within ``api_key_cache_seconds``).

    A key in use is looked up again *before* its entry expires: the first hit past half of its
    life hands the lookup to a thread of the resolver's own and is answered from memory, as are
    the hits that follow until the lookup returns. So no request of a key in use waits for
    the database to check it (each one did when its entry had just expired, all of them at
    once on a busy process), and a revocation still takes effect within
    ``api_key_cache_seconds``: half of it on a key in use."""

    def __init__(self, svc: Services, clock: Callable[[], float] = time.monotonic) -> None:
        self.svc = svc
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._mutex = threading.Lock()
        self._refresher: ThreadPoolExecutor | None = None
        self.lookups = 0  # keys looked up in the database, for tests and diagnostics

    def cached(self, presented: str) -> Principal | None:
        """The principal of a key resolved a moment ago, from memory (no I/O: the API asks
        this on its event loop, and goes to the database, off the loop, only if it is not)."""
        return self._hit(presented, _hash(presented))

    def resolve(self, presented: str) -> Principal | None:
        digest = _hash(presented)
        principal = self._hit(presented, digest)
        if principal is not None:
            return principal
        return self._renew(presented, digest)

    def _hit(self, presented: str, digest: str) -> Principal | None:
        entry = self._cache.get(digest)
        now = self._clock()
        if entry is None or entry.expires <= now:
            return None
        if entry.refresh_at <= now and not entry.refreshing:
            with self._mutex:
                due, entry.refreshing = not entry.refreshing, True
            if due:
                self._refresh_soon(presented, digest)
        return entry.principal

    def _renew(self, presented: str, digest: str) -> Principal | None:
        """Look the key up and remember the answer (a revoked key is forgotten)."""
        principal = self._lookup(presented, digest)
        ttl = self.svc.settings.api_key_cache_seconds
        if principal is None or ttl <= 0:
            self._cache.pop(digest, None)
        else:
            now = self._clock()
            self._cache[digest] = _Cached(principal, now + ttl / 2, now + ttl)
        return principal

    def _refresh_soon(self, presented: str, digest: str) -> None:
        with self._mutex:
            if self._refresher is None:
                self._refresher = ThreadPoolExecutor(1, thread_name_prefix="key-refresh")
            self._refresher.submit(self._refresh, presented, digest)

    def _refresh(self, presented: str, digest: str) -> None:
        try:
            self._renew(presented, digest)
        except Exception:  # the entry stays until it expires; then a request looks it up
            log.exception("looking an API key up again failed; trying again in a second")
            entry = self._cache.get(digest)
            if entry is not None:  # not at every hit while the database is away
                entry.refresh_at = self._clock() + RETRY_SECONDS
                entry.refreshing = False

    def close(self) -> None:
        with self._mutex:
            refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.shutdown(wait=True)

    def _lookup(self, presented: str, digest: str) -> Principal | None:
        parts = presented.split("_")
        if len(parts) < 3 or parts[0] != "hy":
            return None
        self.lookups += 1
        with self.svc.engine.connect() as conn:
            row = owners_repo.find_api_key(conn, parts[1])
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, digest):
            return None
        scopes = frozenset(Scope(s) for s in row.scopes.split(","))
        return Principal(row.owner_id, row.owner_kind, scopes, row.prefix)
