"""``AsyncClient``: ``Client``'s methods as coroutines, on ``httpx.AsyncClient``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio.to_thread
import httpx

from modelport.client import calls
from modelport.client.base import BaseClient
from modelport.client.calls import JSONObject, KeyOptions, Outputs, Progress, Upload
from modelport.constants import DEFAULT_ALIAS

T = TypeVar("T")


class AsyncClient(BaseClient[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """``Client``'s calls, answers and errors, awaited (arguments: see ``BaseClient``)."""

    _http_class = httpx.AsyncClient

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _send(self, call: calls.Call[T]) -> T:
        content = _read_off_loop(call.upload) if call.upload else None
        return call.result(await self._http.send(call.request(self._http, content)))

    # ---- models and versions ------------------------------------------------------------------
    async def list_models(self) -> list[JSONObject]:
        return await self._send(calls.list_models())

    async def get_model(self, name: str) -> JSONObject:
        return await self._send(calls.get_model(name))

    async def delete_model(self, name: str) -> None:
        await self._send(calls.delete_model(name))

    async def push(
        self, name: str, path: str | Path, *, framework: str | None = None, progress: Progress | None = None
    ) -> JSONObject:
        return await self._send(calls.push(name, path, framework, progress))

    async def list_versions(self, name: str) -> list[JSONObject]:
        return await self._send(calls.list_versions(name))

    async def get_version(self, name: str, version: int) -> JSONObject:
        return await self._send(calls.get_version(name, version))

    async def delete_version(self, name: str, version: int) -> None:
        await self._send(calls.delete_version(name, version))

    # ---- aliases ------------------------------------------------------------------------------
    async def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> JSONObject:
        return await self._send(calls.promote(name, version, alias))

    async def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> JSONObject:
        return await self._send(calls.rollback(name, alias))

    async def list_aliases(self, name: str) -> list[JSONObject]:
        return await self._send(calls.list_aliases(name))

    async def alias_history(self, name: str, alias: str = DEFAULT_ALIAS) -> list[JSONObject]:
        return await self._send(calls.alias_history(name, alias))

    # ---- keys and audit -----------------------------------------------------------------------
    async def create_key(self, name: str, scopes: list[str], **options: Unpack[KeyOptions]) -> JSONObject:
        return await self._send(calls.create_key(name, scopes, options))

    async def list_keys(self) -> list[JSONObject]:
        return await self._send(calls.list_keys())

    async def revoke_key(self, name: str) -> JSONObject:
        return await self._send(calls.revoke_key(name))

    async def audit(self, **filters: Any) -> list[JSONObject]:
        return await self._send(calls.audit(filters))

    # ---- inference ----------------------------------------------------------------------------
    async def metadata(self, name: str, version: str | int | None = None) -> JSONObject:
        return await self._send(calls.metadata(name, version))

    async def infer(
        self, name: str, inputs: dict[str, Any], *, version: str | int | None = None
    ) -> tuple[Outputs, str]:
        return await self._send(calls.infer(name, inputs, version))


async def _read_off_loop(upload: Upload) -> AsyncIterator[bytes]:
    """The upload's chunks, each read in a worker thread so that a large file does not block the loop."""
    chunks = upload.chunks()
    try:
        while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
            yield chunk
    finally:
        chunks.close()
