"""Python SDK (sync): the management API and V2 inference over HTTP, with typed errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelport.errors import (
    ERRORS_BY_CODE,
    Conflict,
    Forbidden,
    InvalidInput,
    ModelportError,
    NotFound,
    NotReady,
    Unauthenticated,
)
from modelport.serving.datatypes import numpy_dtype, v2_datatype

DEFAULT_URL = "http://127.0.0.1:8080"


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


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.url = (url or os.environ.get("MODELPORT_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else default_api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # ---- models and versions ------------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/models")  # type: ignore[no-any-return]

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/models/{name}")  # type: ignore[no-any-return]

    def delete_model(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/models/{name}")

    def push(
        self,
        name: str,
        path: str | Path,
        *,
        framework: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a model file or a directory archive as the next version of ``name``."""
        path = Path(path)
        params = {k: v for k, v in {"framework": framework, "filename": path.name}.items() if v}

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        return self._call(  # type: ignore[no-any-return]
            "POST",
            f"/api/v1/models/{name}/versions",
            params=params,
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)},
        )

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/models/{name}/versions")  # type: ignore[no-any-return]

    def get_version(self, name: str, version: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/models/{name}/versions/{version}")  # type: ignore[no-any-return]

    def delete_version(self, name: str, version: int) -> None:
        self._call("DELETE", f"/api/v1/models/{name}/versions/{version}")

    # ---- aliases ------------------------------------------------------------------------------
    def promote(self, name: str, version: int, alias: str = "production") -> dict[str, Any]:
        return self._call(  # type: ignore[no-any-return]
            "PUT", f"/api/v1/models/{name}/aliases/{alias}", json={"version": version}
        )

    def rollback(self, name: str, alias: str = "production") -> dict[str, Any]:
        return self._call("POST", f"/api/v1/models/{name}/aliases/{alias}/rollback")  # type: ignore[no-any-return]

    def list_aliases(self, name: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/models/{name}/aliases")  # type: ignore[no-any-return]

    def alias_history(self, name: str, alias: str = "production") -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/models/{name}/aliases/{alias}/history")  # type: ignore[no-any-return]

    def create_key(
        self,
        name: str,
        scopes: list[str],
        expires_at: str | None = None,
        models: str | None = None,
        rate_limit: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if rate_limit:
            body["rate_limit"] = rate_limit
        if expires_at:
            body["expires_at"] = expires_at
        if models:
            body["models"] = models
        return self._call("POST", "/api/v1/keys", json=body)  # type: ignore[no-any-return]

    def list_keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/keys")  # type: ignore[no-any-return]

    def revoke_key(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/keys/{name}")  # type: ignore[no-any-return]

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/api/v1/audit", params=params)  # type: ignore[no-any-return]

    # ---- inference ----------------------------------------------------------------------------
    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        return self._call("GET", path)  # type: ignore[no-any-return]

    def infer(
        self, name: str, inputs: dict[str, Any], *, version: str | None = None
    ) -> tuple[dict[str, np.ndarray], str]:
        """Run one V2 inference with JSON tensors; returns the outputs and the version that served them."""
        tensors = []
        for input_name, value in inputs.items():
            array = np.asarray(value)
            datatype = v2_datatype(array.dtype)
            data = array.reshape(-1).tolist()
            tensors.append(
                {"name": input_name, "shape": list(array.shape), "datatype": datatype, "data": data}
            )
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        body = self._call("POST", path, json={"inputs": tensors})
        outputs = {}
        for out in body["outputs"]:
            dtype = numpy_dtype(out["datatype"])
            outputs[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        return outputs, body["model_version"]


def _error_from(response: httpx.Response) -> ModelportError:
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict):
        cls = ERRORS_BY_CODE.get(str(error.get("code")), ModelportError)
        exc = cls(str(error.get("message")), field=error.get("field"))
    else:
        exc = _BY_STATUS.get(response.status_code, ModelportError)(str(error or response.text[:200]))
    exc.status_code = response.status_code  # type: ignore[attr-defined]
    return exc


_BY_STATUS: dict[int, type[ModelportError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: NotReady,
}
