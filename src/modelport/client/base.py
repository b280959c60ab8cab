"""What ``Client`` and ``AsyncClient`` share: where the server is, the key, TLS, and the httpx client."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import httpx

from modelport.client import calls, network

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class BaseClient(Generic[HttpT, TransportT]):
    """Holds a connection pool: use a client as a (async) context manager, or close it.

    ``url`` defaults to ``MODELPORT_URL``, then ``http://127.0.0.1:8080``; ``api_key`` to
    ``MODELPORT_API_KEY``, ``MODELPORT_ADMIN_KEY``, then the data directory's ``admin.key``.
    ``verify`` checks the server's TLS certificate: ``True`` against the system's CAs, a path to a CA
    file (PEM) or an ``ssl.SSLContext`` to trust, ``False`` not at all; by default ``MODELPORT_INSECURE``
    (``1``/``true``: no check), else ``MODELPORT_CA_FILE``, else the system's CAs.
    ``transport`` replaces the network: ``httpx.MockTransport``, or ``httpx.ASGITransport(app=...)`` to
    call an app in process with ``AsyncClient`` (then give ``url="http://testserver"``, a host it allows).
    A failed call raises the ``modelport.errors`` class of its error code, with ``status_code`` set; no
    answer at all raises ``network.ConnectionFailed`` (``CertificateRejected`` for TLS), a late one
    ``RequestTimeout``. A URL without ``http://``/``https://`` or an unreadable CA file raises
    ``ConfigError`` here.
    """

    _http_class: ClassVar[type[Any]]

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        *,
        verify: network.Verify = None,
        transport: TransportT | None = None,
    ) -> None:
        self.url = network.base_url(url)
        headers = calls.auth_headers(api_key)
        self._http: HttpT = self._http_class(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            verify=network.tls_verify(verify),
            transport=transport,
        )
