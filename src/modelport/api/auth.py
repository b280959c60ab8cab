"""Who is calling: the bearer key, checked against the registry, and the scope a route needs."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from modelport.security.keys import ANONYMOUS_ADMIN, KeyService, Principal, Scope


class Authenticator:
    def __init__(self, keys: KeyService, enabled: bool) -> None:
        self.keys = keys
        self.enabled = enabled

    def principal(self, request: Request, *scopes: Scope) -> Principal:
        """Authenticate the request and require one of ``scopes`` (sync: call it off the event loop)."""
        if not self.enabled:
            return ANONYMOUS_ADMIN
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        who = self.keys.authenticate(token.strip() if scheme.lower() == "bearer" else None)
        if scopes and not any(s.value in who.scopes for s in scopes):
            who.require(scopes[0])
        return who

    def dependency(self, *scopes: Scope) -> Callable[[Request], Principal]:
        def _dep(request: Request) -> Principal:
            return self.principal(request, *scopes)

        return _dep
