"""Who is calling: the bearer key, checked against the registry, and the scope a route needs.

Management and metadata calls look the key up in the registry every time. The inference hot path
caches verified keys per process; that cache is dropped whenever the registry changes (a revocation is
a change), at once in the process that made the change and at the next reconcile (1 s) in the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import Request

from modelport.errors import Forbidden, Unauthenticated
from modelport.security.hosts import check_host
from modelport.security.keys import ANONYMOUS_ADMIN, KeyService, Principal, Scope
from modelport.security.ratelimit import RateLimiter

MAX_CACHED_KEYS = 10_000


class Authenticator:
    def __init__(self, keys: KeyService, enabled: bool, hosts: frozenset[str] | None = None) -> None:
        self.keys = keys
        self.enabled = enabled
        self.hosts = hosts
        self._cache: dict[str, Principal] = {}
        self._limits = RateLimiter()

    def forget(self) -> None:
        self._cache.clear()

    @staticmethod
    def _token(authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def _cached(self, token: str | None) -> Principal | None:
        who = self._cache.get(token) if token else None
        return None if who is None or who.expired() else who

    def _lookup(self, token: str | None) -> Principal:
        who = self.keys.authenticate(token)
        if token is not None:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[token] = who
        return who

    def _check(self, who: Principal, scopes: tuple[Scope, ...]) -> Principal:
        if scopes and not any(s.value in who.scopes for s in scopes):
            who.require(scopes[0])
        self._limits.take(who.name, who.rate_limit)
        return who

    def principal(self, request: Request, *scopes: Scope) -> Principal:
        """Authenticate and require one of ``scopes`` (blocking: call off the loop).

        Management calls must also name an allowed Host and Origin (see security/hosts.py). A refused
        management call is written to the audit log, with the caller's address."""
        management = request.url.path.startswith("/api/")
        who = None
        try:
            if management:
                check_host(request.headers.get("host"), request.headers.get("origin"), self.hosts)
            if not self.enabled:
                return ANONYMOUS_ADMIN
            token = self._token(request.headers.get("authorization"))
            who = self._lookup(token)  # not cached: a revocation made by any worker applies at once
            return self._check(who, scopes)
        except (Unauthenticated, Forbidden) as exc:
            if management:
                self.keys.registry.audit.record(
                    actor=who.name if who else "anonymous",
                    action="auth.denied",
                    target=f"{request.method} {request.url.path}"[:256],
                    result="denied",
                    details={"reason": exc.code},  # the client's address is added by the registry
                )
            raise

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
        def _dep(request: Request) -> Principal:
            who = self.principal(request, *scopes)
            request.state.principal = who  # routes' model parameter checks what this key may see
            return who

        return _dep
