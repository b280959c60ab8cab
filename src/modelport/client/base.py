"""What ``Client`` and ``AsyncClient`` share: where the server is, the key, and the httpx client."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import httpx

from modelport.client import calls

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class BaseClient(Generic[HttpT, TransportT]):
    """Holds a connection pool: use a client as a (async) context manager, or close it.

    ``url`` defaults to ``MODELPORT_URL``, then ``http://127.0.0.1:8080``; ``api_key`` to
    ``MODELPORT_API_KEY``, ``MODELPORT_ADMIN_KEY``, then the data directory's ``admin.key``.
    ``transport`` replaces the network: ``httpx.MockTransport``, or ``httpx.ASGITransport(app=...)`` to
    call an app in process with ``AsyncClient`` (then give ``url="http://testserver"``, a host it allows).
    A failed call raises the ``modelport.errors`` class of its error code, with ``status_code`` set.
    """

    _http_class: ClassVar[type[Any]]

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        *,
        transport: TransportT | None = None,
    ) -> None:
        self.url = calls.base_url(url)
        headers = calls.auth_headers(api_key)
        self._http: HttpT = self._http_class(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
