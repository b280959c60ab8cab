"""``AsyncClient``: ``Client``'s methods as coroutines, on ``httpx.AsyncClient``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio.to_thread
import httpx

from modelport.client import calls
from modelport.client.base import BaseClient
from modelport.client.calls import Batching, JSONObject, KeyOptions, Outputs, Placement, Progress, Upload
from modelport.client.network import translated_errors
from modelport.client.packing import pack_directory
from modelport.client.training import (
    MAX_RESUMES,
    EventStream,
    JobLimits,
    Promote,
    Search,
    Validation,
    job_spec,
    overdue,
    read_timeout,
)
from modelport.constants import DEFAULT_ALIAS
from modelport.errors import ConnectionFailed, RequestTimeout

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
        with translated_errors(self.url):
            response = await self._http.send(call.request(self._http, content))
        return call.result(response)

    # ---- models and versions ------------------------------------------------------------------
    async def list_models(self) -> list[JSONObject]:
        return await self._send(calls.list_models())

    async def create_model(self, name: str, description: str = "") -> JSONObject:
        return await self._send(calls.create_model(name, description))

    async def get_model(self, name: str) -> JSONObject:
        return await self._send(calls.get_model(name))

    async def delete_model(self, name: str) -> None:
        await self._send(calls.delete_model(name))

    async def push(
        self,
        name: str,
        path: str | Path,
        *,
        framework: str | None = None,
        progress: Progress | None = None,
        device: str | None = None,
        dtype: str | None = None,
        task: str | None = None,
        runtime: dict[str, Any] | None = None,
        **batching: Unpack[Batching],
    ) -> JSONObject:
        async with _packed_off_loop(path) as file:
            call = calls.push(
                name,
                file,
                framework,
                progress,
                batching,
                device=device,
                dtype=dtype,
                task=task,
                runtime=runtime,
            )
            return await self._send(call)

    async def list_versions(self, name: str) -> list[JSONObject]:
        return await self._send(calls.list_versions(name))

    async def get_version(self, name: str, version: int) -> JSONObject:
        return await self._send(calls.get_version(name, version))

    async def delete_version(self, name: str, version: int) -> None:
        await self._send(calls.delete_version(name, version))

    async def version_config(self, name: str, version: int) -> JSONObject:
        return await self._send(calls.version_config(name, version))

    async def configure_version(
        self,
        name: str,
        version: int,
        *,
        device: str | None = None,
        dtype: str | None = None,
        runtime: dict[str, Any] | None = None,
        **batching: Unpack[Batching],
    ) -> JSONObject:
        placement = Placement(device=device, dtype=dtype, runtime=runtime)
        return await self._send(calls.configure_version(name, version, batching, placement))

    async def load_model(self, name: str) -> None:
        await self._send(calls.load_model(name))

    async def unload_model(self, name: str) -> None:
        await self._send(calls.unload_model(name))

    # ---- aliases ------------------------------------------------------------------------------
    async def promote(self, name: str, version: int | str, alias: str = DEFAULT_ALIAS) -> JSONObject:
        return await self._send(calls.promote(name, version, alias))

    async def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> JSONObject:
        return await self._send(calls.rollback(name, alias))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._send(calls.delete_alias(name, alias))

    async def list_aliases(self, name: str) -> list[JSONObject]:
        return await self._send(calls.list_aliases(name))

    async def alias_history(self, name: str, alias: str = DEFAULT_ALIAS) -> list[JSONObject]:
        return await self._send(calls.alias_history(name, alias))

    # ---- keys and audit -----------------------------------------------------------------------
    async def create_key(self, name: str, scopes: list[str], **options: Unpack[KeyOptions]) -> JSONObject:
        return await self._send(calls.create_key(name, scopes, options))

    async def list_keys(self) -> list[JSONObject]:
        return await self._send(calls.list_keys())

    async def revoke_key(self, name: str, *, force: bool = False) -> JSONObject:
        return await self._send(calls.revoke_key(name, force))

    async def audit(self, **filters: Any) -> list[JSONObject]:
        return await self._send(calls.audit(filters))

    # ---- datasets -----------------------------------------------------------------------------
    async def push_dataset(
        self, name: str, path: str | Path, *, progress: Progress | None = None
    ) -> JSONObject:
        return await self._send(calls.push_dataset(name, path, progress))

    async def list_datasets(self) -> list[JSONObject]:
        return await self._send(calls.list_datasets())

    async def get_dataset(self, name: str) -> JSONObject:
        return await self._send(calls.get_dataset(name))

    async def get_dataset_version(self, name: str, version: int) -> JSONObject:
        return await self._send(calls.get_dataset_version(name, version))

    async def delete_dataset(self, name: str, version: int | None = None) -> None:
        await self._send(calls.delete_dataset(name, version))

    # ---- training jobs ------------------------------------------------------------------------
    async def list_estimators(self) -> list[JSONObject]:
        return await self._send(calls.list_estimators())

    async def train(
        self,
        model: str,
        *,
        dataset: str,
        target: str,
        estimator: str,
        params: dict[str, Any] | None = None,
        features: Sequence[str] | None = None,
        task: str | None = None,
        validation: Validation | None = None,
        metric: str | None = None,
        search: Search | None = None,
        promote: Promote | None = None,
        limits: JobLimits | None = None,
    ) -> JSONObject:
        spec = job_spec(
            model, dataset, target, estimator, params, features, task, validation, metric, search, promote,
            limits,
        )  # fmt: skip
        return await self._send(calls.train(spec))

    async def get_job(self, job_id: int) -> JSONObject:
        return await self._send(calls.get_job(job_id))

    async def list_jobs(
        self, *, state: str | None = None, model: str | None = None, limit: int | None = None
    ) -> list[JSONObject]:
        return await self._send(calls.list_jobs(state, model, limit))

    async def cancel_job(self, job_id: int) -> JSONObject:
        return await self._send(calls.cancel_job(job_id))

    async def job_events(
        self, job_id: int, after: int = 0, *, timeout: float | None = None, follow: bool = True
    ) -> AsyncGenerator[JSONObject, None]:
        """``Client.job_events`` as an async iterator (to stop early, close it: ``contextlib.aclosing``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stream, broken = EventStream(after), 0
        while not stream.ended:
            read = read_timeout(self._http.timeout.read, deadline)
            streaming = recut = False
            try:
                with translated_errors(self.url):
                    async with self._open_events(job_id, stream.resume(), read, follow) as response:
                        streaming = True
                        async for line in response.aiter_lines():
                            if (event := stream.feed(line)) is not None:
                                broken = 0
                                yield event
                            if (
                                deadline is not None
                                and not stream.ended
                                and overdue(job_id, timeout, deadline, read)
                            ):
                                recut = True
                                break
            except RequestTimeout:
                if deadline is None:
                    raise
                overdue(job_id, timeout, deadline, None)
                continue
            except ConnectionFailed:
                if not streaming:
                    raise
            if not stream.ended and not recut:
                broken += 1
                if broken > MAX_RESUMES:
                    raise ConnectionFailed(f"the event stream of job {job_id} kept breaking", url=self.url)

    async def wait_job(self, job_id: int, timeout: float | None = None) -> JSONObject:
        """``Client.wait_job``, awaited."""
        async with aclosing(self.job_events(job_id, timeout=timeout)) as events:
            async for event in events:
                if event["event"] == "end":
                    return dict(event["data"])
        raise AssertionError("a job's event stream stops only after its end event")

    @asynccontextmanager
    async def _open_events(
        self, job_id: int, after: int, read: float | None, follow: bool
    ) -> AsyncIterator[httpx.Response]:
        request = calls.job_events(job_id, after, follow).request(self._http)
        request.extensions["timeout"] = {**request.extensions["timeout"], "read": read}
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                await response.aread()
                raise calls.error_from(response)
            yield response
        finally:
            await response.aclose()

    # ---- monitoring ---------------------------------------------------------------------------
    async def monitoring(self, name: str, window: str | int = "1h") -> JSONObject:
        return await self._send(calls.monitoring(name, window))

    async def monitoring_config(self, name: str) -> JSONObject:
        return await self._send(calls.monitoring_config(name))

    async def configure_monitoring(
        self, name: str, *, sample_rate: float, reference_rows: int = 0
    ) -> JSONObject:
        return await self._send(calls.configure_monitoring(name, sample_rate, reference_rows))

    async def predictions(self, name: str, **filters: Any) -> JSONObject:
        return await self._send(calls.predictions(name, filters))

    async def feedback(self, name: str, items: list[Mapping[str, Any]]) -> JSONObject:
        return await self._send(calls.feedback(name, items))

    async def set_reference(
        self,
        name: str,
        version: int,
        dataset: str,
        *,
        features: list[str] | None = None,
        target: str | None = None,
    ) -> JSONObject:
        return await self._send(calls.set_reference(name, version, dataset, features, target))

    async def list_alerts(self, name: str) -> list[JSONObject]:
        return await self._send(calls.list_alerts(name))

    async def create_alert(self, name: str, **rule: Any) -> JSONObject:
        return await self._send(calls.create_alert(name, rule))

    async def delete_alert(self, name: str, rule_id: int) -> None:
        await self._send(calls.delete_alert(name, rule_id))

    # ---- inference ----------------------------------------------------------------------------
    async def metadata(self, name: str, version: str | int | None = None) -> JSONObject:
        return await self._send(calls.metadata(name, version))

    async def infer(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        version: str | int | None = None,
        request_id: str | None = None,
    ) -> tuple[Outputs, str]:
        return await self._send(calls.infer(name, inputs, version, request_id))


@asynccontextmanager
async def _packed_off_loop(path: str | Path) -> AsyncIterator[Path]:
    """``packing.packed``, the archive written in a worker thread."""
    path = Path(path)
    if not path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="modelport-push-") as tmp:
        yield await anyio.to_thread.run_sync(pack_directory, path, Path(tmp))


async def _read_off_loop(upload: Upload) -> AsyncIterator[bytes]:
    """The upload's chunks, each read in a worker thread so that a large file does not block the loop."""
    chunks = upload.chunks()
    try:
        while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
            yield chunk
    finally:
        chunks.close()
