"""``Client``: the management API and V2 inference over HTTP, blocking, with typed errors."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from modelport.client import calls
from modelport.client.base import BaseClient
from modelport.client.calls import Batching, JSONObject, KeyOptions, Outputs, Placement, Progress
from modelport.client.network import translated_errors
from modelport.client.packing import packed
from modelport.constants import DEFAULT_ALIAS

T = TypeVar("T")


class Client(BaseClient[httpx.Client, httpx.BaseTransport]):
    """The blocking client (arguments: see ``BaseClient``); ``AsyncClient`` has the same methods, awaited."""

    _http_class = httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: calls.Call[T]) -> T:
        content = call.upload.chunks() if call.upload else None
        with translated_errors(self.url):
            response = self._http.send(call.request(self._http, content))
        return call.result(response)

    # ---- models and versions ------------------------------------------------------------------
    def list_models(self) -> list[JSONObject]:
        return self._send(calls.list_models())

    def create_model(self, name: str, description: str = "") -> JSONObject:
        """Create an empty model (a push creates one as needed; this one carries a description)."""
        return self._send(calls.create_model(name, description))

    def get_model(self, name: str) -> JSONObject:
        return self._send(calls.get_model(name))

    def delete_model(self, name: str) -> None:
        self._send(calls.delete_model(name))

    def push(
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
        """Upload a model file, an archive, or a directory (sent as a ``.tar.gz`` of its files) as the
        next version of ``name``.

        ``framework`` overrides detection; ``progress`` is called with each chunk's size as it is sent;
        ``device`` (auto, cpu, cuda, cuda:N) and ``dtype`` (float32, float16, bfloat16) place it; ``task``
        says what a multi-task model does (e.g. ``feature-extraction``); ``runtime`` holds settings only
        its runtime reads (e.g. ``{"normalize": True}``); ``max_batch_size``,
        ``max_delay_ms``, ``max_queue``, ``max_batch_tokens`` set its batching. The answer's
        ``same_sha256_as`` lists the versions that already had the same bytes.
        """
        with packed(path) as file:
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
            return self._send(call)

    def list_versions(self, name: str) -> list[JSONObject]:
        return self._send(calls.list_versions(name))

    def get_version(self, name: str, version: int) -> JSONObject:
        return self._send(calls.get_version(name, version))

    def delete_version(self, name: str, version: int) -> None:
        self._send(calls.delete_version(name, version))

    def version_config(self, name: str, version: int) -> JSONObject:
        """The version's own serving settings; one not there uses the server's default."""
        return self._send(calls.version_config(name, version))

    def configure_version(
        self,
        name: str,
        version: int,
        *,
        device: str | None = None,
        dtype: str | None = None,
        runtime: dict[str, Any] | None = None,
        **batching: Unpack[Batching],
    ) -> JSONObject:
        """Change only the settings given (batching, device, dtype, runtime settings); the others keep
        their values. Returns the version."""
        placement = Placement(device=device, dtype=dtype, runtime=runtime)
        return self._send(calls.configure_version(name, version, batching, placement))

    def load_model(self, name: str) -> None:
        """Load the model's serving version now (V2 repository API), rather than on first request."""
        self._send(calls.load_model(name))

    def unload_model(self, name: str) -> None:
        """Free the model's memory; the next request loads it again."""
        self._send(calls.unload_model(name))

    # ---- aliases ------------------------------------------------------------------------------
    def promote(self, name: str, version: int | str, alias: str = DEFAULT_ALIAS) -> JSONObject:
        """Point ``alias`` at ``version``: a number, or the name of another alias of the model (e.g.
        ``"staging"``: its version, read and promoted in one transaction). The version is loaded before
        traffic moves to it."""
        return self._send(calls.promote(name, version, alias))

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> JSONObject:
        """Move ``alias`` back to the version it pointed at before."""
        return self._send(calls.rollback(name, alias))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``; requests through it answer 404 from then on. Its history stays."""
        self._send(calls.delete_alias(name, alias))

    def list_aliases(self, name: str) -> list[JSONObject]:
        return self._send(calls.list_aliases(name))

    def alias_history(self, name: str, alias: str = DEFAULT_ALIAS) -> list[JSONObject]:
        return self._send(calls.alias_history(name, alias))

    # ---- keys and audit -----------------------------------------------------------------------
    def create_key(self, name: str, scopes: list[str], **options: Unpack[KeyOptions]) -> JSONObject:
        """Create a key (``expires_at``, ``models``, ``rate_limit``: see ``KeyOptions``).

        The answer's ``key`` is the secret: it is shown this once.
        """
        return self._send(calls.create_key(name, scopes, options))

    def list_keys(self) -> list[JSONObject]:
        return self._send(calls.list_keys())

    def revoke_key(self, name: str, *, force: bool = False) -> JSONObject:
        """Revoke a key at once. The last active admin key needs ``force=True`` (else ``Conflict``)."""
        return self._send(calls.revoke_key(name, force))

    def audit(self, **filters: Any) -> list[JSONObject]:
        """Audit entries, newest first; filters: ``actor``, ``action``, ``target``, ``model`` (its
        versions and aliases too), ``before`` (an entry id: the next page), ``limit``."""
        return self._send(calls.audit(filters))

    # ---- inference ----------------------------------------------------------------------------
    def metadata(self, name: str, version: str | int | None = None) -> JSONObject:
        """V2 model metadata (inputs, outputs) of the version that ``version`` (a number or alias) names."""
        return self._send(calls.metadata(name, version))

    def infer(
        self, name: str, inputs: dict[str, Any], *, version: str | int | None = None
    ) -> tuple[Outputs, str]:
        """Run one V2 inference with JSON tensors; returns the outputs and the version that served them."""
        return self._send(calls.infer(name, inputs, version))
