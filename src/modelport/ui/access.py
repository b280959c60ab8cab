"""Who is looking at the dashboard: sign-in with an API key, the session cookie, CSRF and Host/Origin.

Signing in posts an API key once; the server keeps a session row (``registry.sessions``) named by the
sha256 of a random token, and the browser keeps the token in a cookie (``HttpOnly; SameSite=Strict;
Path=/ui``, ``Secure`` when the request came over TLS). Every request reads the session together with its
key's current record, so the key's scopes and model limits apply and a revoked or expired key ends the
session at once. Each session has its own CSRF token, which every state-changing form carries; a POST
must also come from an allowed Host and Origin (``security/hosts.py``), as on the management API.

With authentication off the dashboard is open as the anonymous admin; its forms then carry a
double-submit token (a random cookie of its own, echoed by each form).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from modelport.api.auth import GuardedAuth
from modelport.errors import Forbidden, Unauthenticated
from modelport.registry import Registry
from modelport.security.hosts import check_host
from modelport.security.keys import ANONYMOUS_ADMIN, Principal, Scope, hash_key, principal_of

SESSION_COOKIE = "modelport_session"
CSRF_COOKIE = "modelport_csrf"  # only with authentication off (the double-submit token)
CSRF_FIELD = "csrf"
PURGE_EVERY = timedelta(minutes=10)


class SignInRequired(Exception):
    """No live session: pages send the browser to the sign-in page, fragments and JSON answer 401."""


class CsrfRefused(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "this form is out of date or did not come from this dashboard: reload the page and try again"
        )


@dataclass(frozen=True)
class Viewer:
    """The signed-in key (or the anonymous admin) and the CSRF token its forms carry."""

    who: Principal
    csrf: str
    session: str | None = None  # the session's id; None with authentication off
    new_csrf_cookie: bool = False  # authentication off: the token is new, set its cookie

    @property
    def name(self) -> str:
        return self.who.name

    def can(self, scope: Scope) -> bool:
        return Scope.ADMIN.value in self.who.scopes or scope.value in self.who.scopes

    def sees(self, model: str) -> bool:
        return self.who.can_access(model)


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DashboardAuth:
    """Sessions, CSRF and the Host/Origin check of the dashboard (blocking methods: call off the loop)."""

    def __init__(self, guarded: GuardedAuth, registry: Registry, session_seconds: int) -> None:
        self.guarded = guarded
        self.registry = registry
        self.session_seconds = session_seconds
        self._purged_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.guarded.auth.enabled

    def check_host(self, request: Request) -> None:
        check_host(request.headers.get("host"), request.headers.get("origin"), self.guarded.hosts)

    # ---- who is it ------------------------------------------------------------------------------
    def viewer(self, request: Request) -> Viewer:
        """The viewer of this request; SignInRequired when there is no live session."""
        self.check_host(request)
        if not self.enabled:
            token = request.cookies.get(CSRF_COOKIE)
            fresh = not _plausible(token)
            return Viewer(ANONYMOUS_ADMIN, secrets.token_urlsafe(32) if fresh else str(token), None, fresh)
        token = request.cookies.get(SESSION_COOKIE)
        if not _plausible(token):
            raise SignInRequired
        session = self.registry.sessions.find(_session_id(str(token)))
        if session is None:
            raise SignInRequired
        return Viewer(principal_of(session.key), session.csrf, session.id)

    def admit(self, viewer: Viewer, *scopes: Scope) -> None:
        """Forbidden unless the viewer holds one of ``scopes``; the key's rate limit applies."""
        self.guarded.auth.admit(viewer.who, *scopes)

    def check_csrf(self, viewer: Viewer, submitted: str | None) -> None:
        if viewer.new_csrf_cookie or not submitted or not hmac.compare_digest(submitted, viewer.csrf):
            raise CsrfRefused

    # ---- sign in and out ------------------------------------------------------------------------
    def sign_in(self, request: Request, secret: str) -> tuple[Principal, str, datetime]:
        """Check the key and open a session: the key's holder, the cookie's token and its expiry."""
        self.check_host(request)
        secret = secret.strip()
        who = self.guarded.auth.keys.authenticate(secret)  # Unauthenticated: unknown, revoked, expired
        try:
            who.require(Scope.READ)
        except Forbidden:
            raise Forbidden(
                f"the key {who.name!r} lacks the 'read' scope, which the dashboard needs to show anything"
            ) from None
        record = self.registry.keys.find_by_hash(hash_key(secret))
        if record is None:  # deleted between the two reads
            raise Unauthenticated("invalid or revoked API key")
        self._purge_now_and_then()
        previous = request.cookies.get(SESSION_COOKIE)
        if _plausible(previous):  # signing in again replaces the browser's session, never adds to it
            self.registry.sessions.delete(_session_id(str(previous)))
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.session_seconds)
        if who.expires_at is not None:
            expires = min(expires, who.expires_at)
        self.registry.sessions.create(
            _session_id(token), key_id=record.id, csrf=secrets.token_urlsafe(32), expires_at=expires
        )
        self.registry.audit.record(actor=who.name, action="ui.signin", target="ui")
        return who, token, expires

    def sign_out(self, viewer: Viewer) -> None:
        if viewer.session is not None:
            self.registry.sessions.delete(viewer.session)
            self.registry.audit.record(actor=viewer.name, action="ui.signout", target="ui")

    def _purge_now_and_then(self) -> None:
        now = datetime.now(UTC)
        if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            self.registry.sessions.purge()

    def denied(self, request: Request, actor: str, reason: str) -> None:
        """Write a refusal to the audit log, as the management API does."""
        self.registry.audit.record(
            actor=actor,
            action="auth.denied",
            target=f"{request.method} {request.url.path}"[:256],
            result="denied",
            details={"reason": reason},
        )

    # ---- cookies --------------------------------------------------------------------------------
    def set_session_cookie(self, request: Request, response: Response, token: str, expires: datetime) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=max(1, int((expires - datetime.now(UTC)).total_seconds())),
            path=cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def clear_session_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path=cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def set_csrf_cookie(self, request: Request, response: Response, viewer: Viewer) -> None:
        if viewer.new_csrf_cookie:
            response.set_cookie(
                CSRF_COOKIE,
                viewer.csrf,
                path=cookie_path(request),
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="strict",
            )


def cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "/ui")


def _plausible(token: str | None) -> bool:
    return token is not None and 20 <= len(token) <= 128 and token.isascii()
