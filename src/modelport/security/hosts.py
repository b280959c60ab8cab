"""Host and Origin checks for the management API, against DNS rebinding.

A web page on ``evil.example`` whose name is re-pointed at 127.0.0.1 can make a browser send requests to a
loopback server; those requests carry ``Host: evil.example`` (and an ``Origin`` header). Management calls
are answered only when both name an allowed host: the loopback names, the address the server binds, and
``MODELPORT_ALLOWED_HOSTS``. ``*`` in that list turns the check off (behind a proxy that checks it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from modelport.errors import Forbidden

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def allowed_hosts(bind_host: str, extra: list[str]) -> frozenset[str] | None:
    """The allow-list, or None when it is switched off with ``*``."""
    if "*" in extra:
        return None
    return frozenset({*LOOPBACK_NAMES, bind_host.lower(), *(h.lower() for h in extra)})


def _hostname(value: str) -> str:
    return (urlsplit(f"//{value}").hostname or "").lower()


def check_host(host: str | None, origin: str | None, allowed: frozenset[str] | None) -> None:
    if allowed is None:
        return
    if host is not None and _hostname(host) not in allowed:
        raise Forbidden(f"host {_hostname(host)!r} is not allowed; add it to MODELPORT_ALLOWED_HOSTS")
    if origin is not None:
        # "null" is what sandboxed frames and some redirects send: a page of unknown origin
        origin_host = "null" if origin == "null" else (urlsplit(origin).hostname or "").lower()
        if origin_host not in allowed:
            raise Forbidden(f"origin {origin_host!r} is not allowed; add it to MODELPORT_ALLOWED_HOSTS")
