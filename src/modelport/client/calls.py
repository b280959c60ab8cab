"""The SDK's I/O-free half: each API call as a ``Call`` (what to send, how to read the answer).

``Client`` and ``AsyncClient`` only send a ``Call`` and hand the response back to it, so request building,
response decoding and the mapping of error responses to the ``modelport.errors`` tree live here once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar, cast

import httpx
import numpy as np

from modelport.constants import DEFAULT_ALIAS
from modelport.errors import (
    ERRORS_BY_CODE,
    Conflict,
    Forbidden,
    InvalidInput,
    ModelportError,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    StorageFull,
    Unauthenticated,
)
from modelport.serving.datatypes import numpy_dtype, v2_datatype

T = TypeVar("T")
JSONObject = dict[str, Any]
Outputs = dict[str, np.ndarray]
Progress = Callable[[int], None]
UPLOAD_CHUNK = 1024 * 1024


def default_api_key() -> str | None:
    """``MODELPORT_API_KEY``, else ``MODELPORT_ADMIN_KEY``, else the data directory's ``admin.key``."""
    for var in ("MODELPORT_API_KEY", "MODELPORT_ADMIN_KEY"):
        if os.environ.get(var):
            return os.environ[var]
    key_file = Path(os.environ.get("MODELPORT_DATA_DIR", ".modelport")) / "admin.key"
    try:
        return key_file.read_text().strip() or None
    except OSError:
        return None


def auth_headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else default_api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class Upload:
    """A file sent as the request body in chunks, reporting each chunk's size to ``progress``."""

    path: Path
    progress: Progress | None = None

    def chunks(self) -> Generator[bytes, None, None]:
        with self.path.open("rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                if self.progress:
                    self.progress(len(chunk))
                yield chunk


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: the request to send and ``decode``, which turns its JSON answer into ``T``."""

    method: str
    path: str
    decode: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    upload: Upload | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient, content: Any = None) -> httpx.Request:
        """The request, with ``content`` (the upload's chunks, as the sending client iterates them)."""
        return http.build_request(
            self.method, self.path, params=self.params, json=self.json, content=content, headers=self.headers
        )

    def result(self, response: httpx.Response) -> T:
        """The decoded answer, or the typed error that the response stands for, raised."""
        if response.status_code >= 400:
            raise error_from(response)
        if response.status_code == 204 or not response.content:
            return self.decode(None)
        return self.decode(response.json())


def _object(body: Any) -> JSONObject:
    return cast(JSONObject, body)


def _objects(body: Any) -> list[JSONObject]:
    return cast(list[JSONObject], body)


def _nothing(body: Any) -> None:
    return None


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given: None means "not given"; 0, "" and False are values."""
    return {k: v for k, v in options.items() if v is not None}


def _model(name: str) -> str:
    return f"/api/v1/models/{name}"


def _alias(name: str, alias: str) -> str:
    return f"{_model(name)}/aliases/{alias}"


def _v2(name: str, version: str | int | None) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "")


# ---- models and versions ------------------------------------------------------------------------
def list_models() -> Call[list[JSONObject]]:
    return Call("GET", "/api/v1/models", _objects)


def get_model(name: str) -> Call[JSONObject]:
    return Call("GET", _model(name), _object)


def delete_model(name: str) -> Call[None]:
    return Call("DELETE", _model(name), _nothing)


class Batching(TypedDict, total=False):
    """A version's batching settings; a setting not given keeps its value (or the server's default)."""

    max_batch_size: int | None  # most requests run as one batch
    max_delay_ms: float | None  # longest wait for a batch to fill
    max_queue: int | None  # most requests waiting; more answer 503 with Retry-After
    max_batch_tokens: int | None  # most tokens in one batch, padding included (text models)


class Placement(TypedDict, total=False):
    """Where and how a version runs; a setting not given keeps its value (or the server's default)."""

    device: str | None  # auto, cpu, cuda, cuda:N
    dtype: str | None  # float32, float16, bfloat16
    runtime: dict[str, Any] | None  # settings only the runtime reads, e.g. {"normalize": true}


def create_model(name: str, description: str = "") -> Call[JSONObject]:
    return Call("POST", "/api/v1/models", _object, json={"name": name, "description": description})


def push(
    name: str,
    path: str | Path,
    framework: str | None,
    progress: Progress | None,
    batching: Batching | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    task: str | None = None,
    runtime: dict[str, Any] | None = None,
) -> Call[JSONObject]:
    """Upload a model file or archive (a directory: see ``packing.packed``) as the next version of
    ``name``, with its batching settings, device, dtype and task."""
    path = Path(path)
    params: dict[str, Any] = {"filename": path.name, **({"framework": framework} if framework else {})}
    params.update(_given(batching or {}))
    params.update(_given({"device": device, "dtype": dtype, "task": task}))
    if runtime is not None:
        params["runtime"] = json.dumps(runtime)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)}
    upload = Upload(path, progress)
    return Call("POST", f"{_model(name)}/versions", _object, params=params, upload=upload, headers=headers)


def list_versions(name: str) -> Call[list[JSONObject]]:
    return Call("GET", f"{_model(name)}/versions", _objects)


def get_version(name: str, version: int) -> Call[JSONObject]:
    return Call("GET", f"{_model(name)}/versions/{version}", _object)


def delete_version(name: str, version: int) -> Call[None]:
    return Call("DELETE", f"{_model(name)}/versions/{version}", _nothing)


def version_config(name: str, version: int) -> Call[JSONObject]:
    """The version's own serving settings (a setting absent uses the server's default)."""
    return Call("GET", f"{_model(name)}/versions/{version}/config", _object)


def configure_version(
    name: str, version: int, batching: Batching, placement: Placement | None = None
) -> Call[JSONObject]:
    """Change only the settings given (a JSON merge patch); the answer is the version. A new device,
    dtype or runtime setting loads the version again that way, then switches to it."""
    body: dict[str, Any] = {"batching": _given(batching), **_given(placement or {})}
    return Call("PATCH", f"{_model(name)}/versions/{version}/config", _object, json=body)


def load_model(name: str) -> Call[None]:
    return Call("POST", f"/v2/repository/models/{name}/load", _nothing)


def unload_model(name: str) -> Call[None]:
    return Call("POST", f"/v2/repository/models/{name}/unload", _nothing)


# ---- aliases ------------------------------------------------------------------------------------
def promote(name: str, target: int | str, alias: str = DEFAULT_ALIAS) -> Call[JSONObject]:
    """Point ``alias`` at ``target``: a version number (digits count as one), or the name of another
    alias of the model, whose version the server reads and promotes in one transaction."""
    if isinstance(target, str) and not target.isdigit():
        return Call("PUT", _alias(name, alias), _object, json={"alias": target})
    return Call("PUT", _alias(name, alias), _object, json={"version": int(target)})


def delete_alias(name: str, alias: str) -> Call[None]:
    return Call("DELETE", _alias(name, alias), _nothing)


def rollback(name: str, alias: str = DEFAULT_ALIAS) -> Call[JSONObject]:
    return Call("POST", f"{_alias(name, alias)}/rollback", _object)


def list_aliases(name: str) -> Call[list[JSONObject]]:
    return Call("GET", f"{_model(name)}/aliases", _objects)


def alias_history(name: str, alias: str = DEFAULT_ALIAS) -> Call[list[JSONObject]]:
    return Call("GET", f"{_alias(name, alias)}/history", _objects)


# ---- keys and audit -----------------------------------------------------------------------------
class KeyOptions(TypedDict, total=False):
    expires_at: str | None  # ISO 8601; the key stops working then
    models: str | None  # a glob: the key works only for matching model names
    rate_limit: float | None  # requests per second, per server process


def create_key(name: str, scopes: list[str], options: KeyOptions) -> Call[JSONObject]:
    # "is not None", never truthiness: rate_limit=0 goes to the server, which refuses it, rather than
    # silently making a key without a limit
    body = {"name": name, "scopes": scopes, **_given(options)}
    return Call("POST", "/api/v1/keys", _object, json=body)


def list_keys() -> Call[list[JSONObject]]:
    return Call("GET", "/api/v1/keys", _objects)


def revoke_key(name: str, force: bool = False) -> Call[JSONObject]:
    """``force``: also revoke the last active admin key (the server answers 409 without it)."""
    return Call("DELETE", f"/api/v1/keys/{name}", _object, params={"force": "true"} if force else None)


def audit(filters: dict[str, Any]) -> Call[list[JSONObject]]:
    """Newest first; filters: ``actor``, ``action``, ``target``, ``model``, ``before`` (an id), ``limit``."""
    params = _given(filters)
    return Call("GET", "/api/v1/audit", _objects, params=params)


# ---- datasets -----------------------------------------------------------------------------------
def _dataset(name: str) -> str:
    return f"/api/v1/datasets/{name}"


def push_dataset(name: str, path: str | Path, progress: Progress | None) -> Call[JSONObject]:
    """Upload a CSV (UTF-8, a header row) or Parquet file as the next version of dataset ``name``."""
    path = Path(path)
    # the server reads the format from the content; the type only labels the body for proxies and logs
    kind = "application/vnd.apache.parquet" if path.suffix.lower() == ".parquet" else "text/csv"
    headers = {"Content-Type": kind, "Content-Length": str(path.stat().st_size)}
    upload = Upload(path, progress)
    return Call("POST", f"{_dataset(name)}/versions", _object, upload=upload, headers=headers)


def list_datasets() -> Call[list[JSONObject]]:
    return Call("GET", "/api/v1/datasets", _objects)


def get_dataset(name: str) -> Call[JSONObject]:
    return Call("GET", _dataset(name), _object)


def get_dataset_version(name: str, version: int) -> Call[JSONObject]:
    return Call("GET", f"{_dataset(name)}/versions/{version}", _object)


def delete_dataset(name: str, version: int | None = None) -> Call[None]:
    suffix = "" if version is None else f"/versions/{version}"
    return Call("DELETE", _dataset(name) + suffix, _nothing)


# ---- training jobs ------------------------------------------------------------------------------
def _job(job_id: int) -> str:
    return f"/api/v1/jobs/{job_id}"


def list_estimators() -> Call[list[JSONObject]]:
    return Call("GET", "/api/v1/estimators", _objects)


def train(spec: Mapping[str, Any]) -> Call[JSONObject]:
    """Submit a training job; ``spec`` is the JobSpec body (``training.job_spec``)."""
    return Call("POST", "/api/v1/jobs", _object, json=dict(spec))


def get_job(job_id: int) -> Call[JSONObject]:
    return Call("GET", _job(job_id), _object)


def list_jobs(state: str | None, model: str | None, limit: int | None) -> Call[list[JSONObject]]:
    """Newest first."""
    return Call(
        "GET", "/api/v1/jobs", _objects, params=_given({"state": state, "model": model, "limit": limit})
    )


def cancel_job(job_id: int) -> Call[JSONObject]:
    return Call("POST", f"{_job(job_id)}/cancel", _object)


def job_events(job_id: int, after: int, follow: bool = True) -> Call[None]:
    """The job's server-sent events after sequence number ``after`` (``follow``: until the job ends, else
    the ones so far): sent as a stream whose lines ``training.EventStream`` reads, never decoded as one
    JSON answer."""
    headers = {"Accept": "text/event-stream"}
    params: dict[str, Any] = {"after": after} if follow else {"after": after, "follow": "false"}
    return Call("GET", f"{_job(job_id)}/events", _nothing, params=params, headers=headers)


# ---- monitoring ---------------------------------------------------------------------------------
def monitoring(name: str, window: str | int) -> Call[JSONObject]:
    """The monitoring report over ``window`` (seconds, or ``15m``, ``1h``, ``7d``)."""
    return Call("GET", f"{_model(name)}/monitoring", _object, params={"window": str(window)})


def monitoring_config(name: str) -> Call[JSONObject]:
    return Call("GET", f"{_model(name)}/monitoring/config", _object)


def configure_monitoring(name: str, sample_rate: float, reference_rows: int) -> Call[JSONObject]:
    body = {"sample_rate": sample_rate, "reference_rows": reference_rows}
    return Call("PUT", f"{_model(name)}/monitoring/config", _object, json=body)


def predictions(name: str, filters: Mapping[str, Any]) -> Call[JSONObject]:
    """A page of the prediction log; filters: ``version``, ``since``, ``until``, ``cursor``, ``limit``."""
    return Call("GET", f"{_model(name)}/predictions", _object, params=_given(filters))


def feedback(name: str, items: list[Mapping[str, Any]]) -> Call[JSONObject]:
    return Call("POST", f"{_model(name)}/feedback", _object, json=[dict(i) for i in items])


def set_reference(
    name: str, version: int, dataset: str, features: list[str] | None, target: str | None
) -> Call[JSONObject]:
    body = _given({"dataset": dataset, "features": features, "target": target})
    return Call("PUT", f"{_model(name)}/versions/{version}/reference", _object, json=body)


def list_alerts(name: str) -> Call[list[JSONObject]]:
    return Call("GET", f"{_model(name)}/alerts", _objects)


def create_alert(name: str, rule: Mapping[str, Any]) -> Call[JSONObject]:
    return Call("POST", f"{_model(name)}/alerts", _object, json=_given(rule))


def delete_alert(name: str, rule_id: int) -> Call[None]:
    return Call("DELETE", f"{_model(name)}/alerts/{rule_id}", _nothing)


# ---- inference ----------------------------------------------------------------------------------
def metadata(name: str, version: str | int | None = None) -> Call[JSONObject]:
    return Call("GET", _v2(name, version), _object)


def infer(
    name: str, inputs: dict[str, Any], version: str | int | None = None, request_id: str | None = None
) -> Call[tuple[Outputs, str]]:
    """One V2 inference with JSON tensors; the answer is the outputs and the version that served them.
    ``request_id`` is sent as ``X-Request-Id`` (what feedback names the request by)."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    body = {"inputs": encode_inputs(inputs)}
    return Call("POST", _v2(name, version) + "/infer", _infer_result, json=body, headers=headers)


def encode_inputs(inputs: dict[str, Any]) -> list[JSONObject]:
    tensors = []
    for input_name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise InvalidInput(
                f"input {input_name!r} holds NaN or infinity, which JSON cannot carry: send finite numbers",
                field=input_name,
            )
        tensors.append(
            {
                "name": input_name,
                "shape": list(array.shape),
                "datatype": v2_datatype(array.dtype),
                "data": array.reshape(-1).tolist(),
            }
        )
    return tensors


def _infer_result(body: Any) -> tuple[Outputs, str]:
    outputs = {
        out["name"]: np.asarray(out["data"], dtype=numpy_dtype(out["datatype"])).reshape(out["shape"])
        for out in body["outputs"]
    }
    return outputs, str(body["model_version"])


# ---- errors -------------------------------------------------------------------------------------
# V2 routes answer {"error": "message"} without a code (Triton's shape): the status picks the class.
_BY_STATUS: dict[int, type[ModelportError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: NotReady,
    504: RequestTimeout,
    507: StorageFull,
}


def error_from(response: httpx.Response) -> ModelportError:
    """The ``modelport.errors`` exception an error response stands for, with its status and Retry-After."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    retry_after = _retry_after(response)
    field_name = None
    if isinstance(error, dict):
        cls = ERRORS_BY_CODE.get(str(error.get("code")), ModelportError)
        message, field_name = str(error.get("message") or response.reason_phrase), error.get("field")
    else:
        cls = _BY_STATUS.get(response.status_code, ModelportError)
        if cls is NotReady and retry_after is not None:
            cls = Overloaded  # the one 503 that asks to retry
        message = str(error or response.text[:200])
    if issubclass(cls, RateLimited):
        exc: ModelportError = cls(message, retry_after or 1.0)
        exc.status_code = response.status_code  # RateLimited's constructor takes no status
    else:
        exc = cls(message, field=field_name, status_code=response.status_code)
    if retry_after is not None:
        exc.retry_after = retry_after
    return exc


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
