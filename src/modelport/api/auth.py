"""Who is calling: the bearer key, checked against the registry, and the scope a route needs.

Management and metadata calls look the key up in the registry every time. The inference hot path
caches verified keys per process; that cache is dropped whenever the registry changes (a revocation is
a change), at once in the process that made the change and at the next reconcile (1 s) in the others.

Each surface picks its auth: ``Authenticator`` alone (V2, /metrics), or ``GuardedAuth`` for surfaces a
browser page could be made to call (management, later the dashboard): the Host/Origin allow-list is
checked first and every refusal is written to the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from fastapi import Request

from modelport.errors import Forbidden, Unauthenticated
from modelport.security.hosts import check_host
from modelport.security.keys import ANONYMOUS_ADMIN, KeyService, Principal, Scope
from modelport.security.ratelimit import RateLimiter

MAX_CACHED_KEYS = 10_000


class SurfaceAuth(Protocol):
    def principal(self, request: Request, *scopes: Scope) -> Principal: ...


def dependency(auth: SurfaceAuth, *scopes: Scope) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller, holding one of ``scopes`` (blocking, so FastAPI runs it off the
    loop). Routes' model parameters check what this key may see through ``request.state.principal``."""

    def _dep(request: Request) -> Principal:
        who = auth.principal(request, *scopes)
        request.state.principal = who
        return who

    return _dep


class Authenticator:
    def __init__(self, keys: KeyService, enabled: bool) -> None:
        self.keys = keys
        self.enabled = enabled
        self._cache: dict[str, Principal] = {}
        self._generation = 0  # moves on each forget: a lookup that raced one is not cached
        self._limits = RateLimiter()

    def forget(self) -> None:
        self._generation += 1
        self._cache.clear()

    @staticmethod
    def _token(authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def _cached(self, token: str | None) -> Principal | None:
        who = self._cache.get(token) if token else None
        return None if who is None or who.expired() else who

    def _lookup(self, token: str | None) -> Principal:
        generation = self._generation
        who = self.keys.authenticate(token)
        if token is not None and generation == self._generation:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[token] = who
        return who

    def _check(self, who: Principal, scopes: tuple[Scope, ...]) -> Principal:
        if scopes and not any(s.value in who.scopes for s in scopes):
            who.require(scopes[0])
        self._limits.take(who.name, who.rate_limit)
        return who

    def identify(self, authorization: str | None) -> Principal:
        """The key's holder, from the registry (blocking; not cached: a revocation applies at once)."""
        return self._lookup(self._token(authorization)) if self.enabled else ANONYMOUS_ADMIN

    def admit(self, who: Principal, *scopes: Scope) -> Principal:
        """``who`` if it holds one of ``scopes`` and is within its rate limit."""
        return self._check(who, scopes) if self.enabled else who

    def principal(self, request: Request, *scopes: Scope) -> Principal:
        """Authenticate and require one of ``scopes`` (blocking: call off the loop)."""
        return self.admit(self.identify(request.headers.get("authorization")), *scopes)

    async def authorize(self, authorization: str | None, *scopes: Scope) -> Principal:
        """The hot-path variant, from the raw header: a cache hit never leaves the event loop."""
        if not self.enabled:
            return ANONYMOUS_ADMIN
        token = self._token(authorization)
        who = self._cached(token)
        if who is None:
            who = await asyncio.to_thread(self._lookup, token)
        return self._check(who, scopes)

    def dependency(self, *scopes: Scope) -> Callable[[Request], Principal]:
        return dependency(self, *scopes)


class GuardedAuth:
    """The auth of surfaces a browser page could reach: Host and Origin must be allowed (see
    security/hosts.py) and every refused call is audited, with the caller's address."""

    def __init__(self, auth: Authenticator, hosts: frozenset[str] | None) -> None:
        self.auth = auth
        self.hosts = hosts

    def forget(self) -> None:
        self.auth.forget()

    def principal(self, request: Request, *scopes: Scope) -> Principal:
        who = None
        try:
            check_host(request.headers.get("host"), request.headers.get("origin"), self.hosts)
            who = self.auth.identify(request.headers.get("authorization"))
            return self.auth.admit(who, *scopes)
        except (Unauthenticated, Forbidden) as exc:
            self.auth.keys.registry.audit.record(
                actor=who.name if who else "anonymous",
                action="auth.denied",
                target=f"{request.method} {request.url.path}"[:256],
                result="denied",
                details={"reason": exc.code},  # the client's address is added by the registry
            )
            raise

    def dependency(self, *scopes: Scope) -> Callable[[Request], Principal]:
        return dependency(self, *scopes)
