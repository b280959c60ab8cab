"""Below HTTP: the server's URL, TLS verification, and httpx's transport errors translated in one place.

A call that gets no HTTP answer at all raises ``ConnectionFailed`` (or ``CertificateRejected``) naming
the URL; one whose answer does not come in time raises ``modelport.errors.RequestTimeout``. A bad URL or
CA file is a ``modelport.errors.ConfigError``, raised when the client is made.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from modelport.constants import DEFAULT_URL
from modelport.errors import CertificateRejected, ConfigError, ConnectionFailed, RequestTimeout

TRUE_WORDS = {"1", "true", "yes", "on"}
Verify = ssl.SSLContext | str | Path | bool | None
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def base_url(url: str | None) -> str:
    """``url``, else ``MODELPORT_URL``, else ``DEFAULT_URL``; without a trailing slash.

    Raises ``ConfigError`` for a URL that is not ``http://`` or ``https://`` (e.g. ``localhost:8080``).
    """
    chosen = (url or os.environ.get("MODELPORT_URL") or DEFAULT_URL).strip().rstrip("/")
    if not _SCHEME.match(chosen):
        raise ConfigError(f"server URL {chosen!r} has no scheme: write http://{chosen}", field="url")
    scheme = chosen.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"server URL {chosen!r} is not http:// or https://: modelport serves HTTP", field="url"
        )
    try:
        parsed = httpx.URL(chosen)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"server URL {chosen!r} is not a valid URL: {exc}", field="url") from None
    if not parsed.host:
        raise ConfigError(f"server URL {chosen!r} names no host, e.g. http://127.0.0.1:8080", field="url")
    return chosen


def tls_verify(verify: Verify = None) -> ssl.SSLContext | bool:
    """What httpx's ``verify=`` gets: ``False`` (no check), ``True`` (the system's CAs), or a context
    trusting a CA file (a path given as ``verify``). ``None``: ``MODELPORT_INSECURE`` (a true word),
    else ``MODELPORT_CA_FILE``, else ``True``."""
    if verify is None:
        if os.environ.get("MODELPORT_INSECURE", "").strip().lower() in TRUE_WORDS:
            return False
        verify = os.environ.get("MODELPORT_CA_FILE") or True
    if isinstance(verify, str | Path):
        return _trusting(Path(verify))
    return verify


def _trusting(ca_file: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except FileNotFoundError:
        raise ConfigError(f"CA file {str(ca_file)!r} does not exist", field="ca_file") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"CA file {str(ca_file)!r} is not a PEM certificate bundle ({exc})", field="ca_file"
        ) from None


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Raise httpx's transport errors, met while sending to ``url``, as ``modelport.errors`` classes."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectionFailed(f"no connection to {url}: timed out", url=url) from exc
    except httpx.TimeoutException as exc:
        raise RequestTimeout(f"{url} did not answer in time ({type(exc).__name__})") from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConfigError(f"server URL {url!r}: {exc}", field="url") from exc
    except httpx.InvalidURL as exc:
        raise ConfigError(f"server URL {url!r} is not valid: {exc}", field="url") from exc
    except httpx.TransportError as exc:
        raise _connection_failed(exc, url) from exc


def _connection_failed(exc: httpx.TransportError, url: str) -> ConnectionFailed:
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or str(cause)
        return CertificateRejected(f"cannot verify the TLS certificate of {url}: {reason}", url=url)
    if isinstance(cause, ssl.SSLError):
        hint = " (is it an https:// server?)" if url.startswith("https:") else ""
        return ConnectionFailed(f"TLS with {url} failed: {cause.reason or cause}{hint}", url=url)
    if isinstance(exc, httpx.RemoteProtocolError) and url.startswith("http:"):
        return ConnectionFailed(
            f"{url} closed the connection without an HTTP answer (does it serve https://?)", url=url
        )
    reason = _reason(cause) or str(exc) or type(exc).__name__
    return ConnectionFailed(f"cannot reach the server at {url}: {reason}", url=url)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _reason(cause: BaseException) -> str:
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower() if cause.strerror[:1].isupper() else cause.strerror
    text = str(cause)
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)  # "[Errno 111] Connection refused" -> the words
