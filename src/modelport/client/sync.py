"""``Client``: the management API and V2 inference over HTTP, blocking, with typed errors."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from modelport.client import calls
from modelport.client.base import BaseClient
from modelport.client.calls import Batching, JSONObject, KeyOptions, Outputs, Placement, Progress
from modelport.client.network import translated_errors
from modelport.client.packing import packed
from modelport.client.training import (
    MAX_RESUMES,
    EventStream,
    JobLimits,
    Promote,
    Search,
    Validation,
    job_spec,
    last_job,
    overdue,
    read_timeout,
)
from modelport.constants import DEFAULT_ALIAS
from modelport.errors import ConnectionFailed, RequestTimeout

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

    # ---- datasets -----------------------------------------------------------------------------
    def push_dataset(self, name: str, path: str | Path, *, progress: Progress | None = None) -> JSONObject:
        """Upload a CSV (UTF-8, a header row) or Parquet file as the next version of dataset ``name``,
        streamed (``progress`` is called with each chunk's size). The answer has its ``version``,
        ``rows``, ``schema`` and ``preview``; a bad file raises ``InvalidInput`` naming the row or column."""
        return self._send(calls.push_dataset(name, path, progress))

    def list_datasets(self) -> list[JSONObject]:
        """Uploaded datasets, then the ones bundled with scikit-learn (``sklearn:iris``, ...)."""
        return self._send(calls.list_datasets())

    def get_dataset(self, name: str) -> JSONObject:
        """The dataset, its version numbers and its ``latest`` version (schema and preview)."""
        return self._send(calls.get_dataset(name))

    def get_dataset_version(self, name: str, version: int) -> JSONObject:
        return self._send(calls.get_dataset_version(name, version))

    def delete_dataset(self, name: str, version: int | None = None) -> None:
        """Delete every version, or one; ``Conflict`` while a job or a model version's lineage uses it."""
        self._send(calls.delete_dataset(name, version))

    # ---- training jobs ------------------------------------------------------------------------
    def list_estimators(self) -> list[JSONObject]:
        """What a job can train: each estimator's ``tasks``, ``framework`` and ``params`` (JSON schema)."""
        return self._send(calls.list_estimators())

    def train(
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
        """Submit a job that trains ``estimator`` on ``dataset`` (``name``, ``name:3`` or
        ``sklearn:iris``) to predict ``target``; its model becomes the next version of ``model``.
        Returns the queued job (follow it with ``job_events`` or ``wait_job``). A request the server
        cannot carry out raises ``InvalidSpec`` whose ``field`` names the part at fault."""
        spec = job_spec(
            model, dataset, target, estimator, params, features, task, validation, metric, search, promote,
            limits,
        )  # fmt: skip
        return self._send(calls.train(spec))

    def get_job(self, job_id: int) -> JSONObject:
        return self._send(calls.get_job(job_id))

    def list_jobs(
        self, *, state: str | None = None, model: str | None = None, limit: int | None = None
    ) -> list[JSONObject]:
        """Jobs, newest first (the server's default limit: 100)."""
        return self._send(calls.list_jobs(state, model, limit))

    def cancel_job(self, job_id: int) -> JSONObject:
        """A queued job ends at once; a running one stops within a second or two (``Conflict`` if it
        had already ended)."""
        return self._send(calls.cancel_job(job_id))

    def job_events(
        self, job_id: int, after: int = 0, *, timeout: float | None = None, follow: bool = True
    ) -> Generator[JSONObject, None, None]:
        """The job's events after sequence number ``after``, as they happen: ``{"event", "id", "at",
        "data"}`` with ``event`` one of state, progress, log, decision, and last ``end`` (``data``: the
        job), after which the iterator stops. A broken connection is resumed where it left off.
        ``timeout``: follow for at most that many seconds, then raise ``RequestTimeout``. ``follow``
        False: the events so far, then ``end`` (the job as it is now)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stream, broken = EventStream(after), 0
        while not stream.ended:
            read = read_timeout(self._http.timeout.read, deadline)
            streaming = recut = False
            try:
                with (
                    translated_errors(self.url),
                    self._open_events(job_id, stream.resume(), read, follow) as response,
                ):
                    streaming = True
                    for line in response.iter_lines():
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
                    raise  # silent past the client's timeout, keep-alives included: the server is stuck
                overdue(job_id, timeout, deadline, None)
                continue  # the wait for a line was cut to the time left, and some is left: go on
            except ConnectionFailed:
                if not streaming:
                    raise
            if not stream.ended and not recut:  # broken, or closed before the end: resume after it
                broken += 1
                if broken > MAX_RESUMES:
                    raise ConnectionFailed(f"the event stream of job {job_id} kept breaking", url=self.url)

    def wait_job(self, job_id: int, timeout: float | None = None) -> JSONObject:
        """Follow the job until it ends and return it (whatever its state); ``RequestTimeout`` when it
        has not ended within ``timeout`` seconds (None: no limit)."""
        with closing(self.job_events(job_id, timeout=timeout)) as events:
            return last_job(events)

    @contextmanager
    def _open_events(
        self, job_id: int, after: int, read: float | None, follow: bool
    ) -> Iterator[httpx.Response]:
        request = calls.job_events(job_id, after, follow).request(self._http)
        request.extensions["timeout"] = {**request.extensions["timeout"], "read": read}
        response = self._http.send(request, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                raise calls.error_from(response)
            yield response
        finally:
            response.close()

    # ---- monitoring ---------------------------------------------------------------------------
    def monitoring(self, name: str, window: str | int = "1h") -> JSONObject:
        """Per version traffic, errors, latency, a time series, live quality, drift and the alerts over
        ``window`` (seconds, or ``15m``, ``1h``, ``7d``)."""
        return self._send(calls.monitoring(name, window))

    def monitoring_config(self, name: str) -> JSONObject:
        return self._send(calls.monitoring_config(name))

    def configure_monitoring(self, name: str, *, sample_rate: float, reference_rows: int = 0) -> JSONObject:
        """Log ``sample_rate`` of the model's answered requests (0: off); ``reference_rows``: a version
        with no reference profile gets one from that many first logged predictions."""
        return self._send(calls.configure_monitoring(name, sample_rate, reference_rows))

    def predictions(self, name: str, **filters: Any) -> JSONObject:
        """A page of logged predictions, newest first: ``{"predictions", "next"}``; filters: ``version``,
        ``since``, ``until`` (ISO 8601 or epoch seconds), ``cursor`` (the previous page's ``next``),
        ``limit``."""
        return self._send(calls.predictions(name, filters))

    def feedback(self, name: str, items: list[Mapping[str, Any]]) -> JSONObject:
        """Outcomes of answered requests: ``[{"request_id", "label"}]`` or ``[{"request_id", "value"}]``."""
        return self._send(calls.feedback(name, items))

    def set_reference(
        self,
        name: str,
        version: int,
        dataset: str,
        *,
        features: list[str] | None = None,
        target: str | None = None,
    ) -> JSONObject:
        """Profile ``dataset`` as the version's reference for drift."""
        return self._send(calls.set_reference(name, version, dataset, features, target))

    def list_alerts(self, name: str) -> list[JSONObject]:
        return self._send(calls.list_alerts(name))

    def create_alert(self, name: str, **rule: Any) -> JSONObject:
        """``kind`` (p99, error_rate, drift, accuracy), ``threshold``, ``window``, optionally ``version``,
        ``webhook_url`` and ``webhook_secret``."""
        return self._send(calls.create_alert(name, rule))

    def delete_alert(self, name: str, rule_id: int) -> None:
        self._send(calls.delete_alert(name, rule_id))

    # ---- inference ----------------------------------------------------------------------------
    def metadata(self, name: str, version: str | int | None = None) -> JSONObject:
        """V2 model metadata (inputs, outputs) of the version that ``version`` (a number or alias) names."""
        return self._send(calls.metadata(name, version))

    def infer(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        version: str | int | None = None,
        request_id: str | None = None,
    ) -> tuple[Outputs, str]:
        """Run one V2 inference with JSON tensors; returns the outputs and the version that served them.
        ``request_id`` (sent as ``X-Request-Id``) is what ``feedback`` names the request by."""
        return self._send(calls.infer(name, inputs, version, request_id))
