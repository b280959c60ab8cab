"""What ``/openapi.json`` says about errors and keys: what the server actually answers.

FastAPI documents a 422 validation error on every route with inputs; this server answers 400 in the
surface's error shape instead. ``document`` rewrites a surface's generated document accordingly, once,
when the document is built (nothing here runs per request):

- 422 becomes 400 where the operation takes input the server validates;
- operations that need a key get the HTTP Bearer security scheme (so ``/docs`` "Try it out" sends
  one) and 401, 403 and 429;
- operations on a ``{model}`` get 404;
- routes declare their other statuses with ``responses=errors(409, ...)``;
- every error response gets the surface's error schema, its usual description and headers
  (``WWW-Authenticate`` on 401, ``Retry-After`` on 429 and 503).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
SCHEME = "bearer"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API key (`mp_...`): `Authorization: Bearer <key>`; see docs/security.md for scopes",
}
DESCRIPTIONS = {
    400: "Bad request: invalid input, name, format or archive",
    401: "Missing, invalid, revoked or expired API key",
    403: "The key lacks the scope this operation needs (or, on /api/v1, a Host or Origin not allowed)",
    404: "Unknown model, version, alias or key, or one this key may not see",
    409: "Conflicts with the current state",
    413: "Body over the server's limit",
    422: "A well-formed request that cannot be carried out (e.g. an unknown estimator): field names it",
    429: "The key is over its request rate: retry after Retry-After seconds",
    503: "The version cannot serve now (failed, pending, unloaded, unreadable) or the queue is full",
    504: "The request timed out",
    507: "Not enough storage space; nothing was stored",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds, when the queue is full"}},
}
KEY_ERRORS = (401, 403, 429)
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable error code, e.g. not_found (docs/api.md lists them)")
    message: str
    field: str | None = Field(None, description="the input at fault, when there is one")


class ManagementError(BaseModel):
    """An error answer of the management API (and of paths of no surface)."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, requests (rate limits) or server_error")
    param: str | None = Field(description="the request parameter at fault, when there is one")
    code: str | None = Field(description="e.g. invalid_api_key, model_not_found, invalid_value, timeout")


class OpenAIError(BaseModel):
    """An error answer of the OpenAI-compatible surface (``/v1``)."""

    error: OpenAIErrorDetail


class V2Error(BaseModel):
    """An error answer of the Open Inference Protocol surface."""

    error: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it answers besides the ones ``document`` adds."""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


def add_schemas(doc: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    """Register pydantic models (and the models they use) as components of ``doc``."""
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))


def document(
    doc: dict[str, Any],
    error_model: type[BaseModel],
    public: Sequence[str] = (),
    strict_paths: bool = False,
    by_suffix: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
    """Rewrite a surface's document in place (see the module docstring). ``public``: paths, relative to
    the surface, that need no key. ``strict_paths``: the surface checks its path names (a bad one
    answers 400). ``by_suffix``: (path suffix, status) pairs, statuses of every path ending so."""
    add_schemas(doc, [error_model])
    error_ref = {"$ref": REF.format(model=error_model.__name__)}
    keyed = False
    for path, item in doc.get("paths", {}).items():
        for op in item.values():
            responses: dict[str, Any] = op.setdefault("responses", {})
            validated = responses.pop("422", None) is not None
            wanted: set[int] = set()
            if validated and (strict_paths or _validates_beyond_names(op)):
                wanted.add(400)
            if path not in public:
                op["security"] = [{SCHEME: []}]
                wanted.update(KEY_ERRORS)
                keyed = True
            if "{model}" in path:
                wanted.add(404)
            wanted.update(status for suffix, status in by_suffix if path.endswith(suffix))
            for wanted_status in wanted:
                responses.setdefault(str(wanted_status), {})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    code = int(status)
                    response.setdefault("description", DESCRIPTIONS.get(code, "Error"))
                    response.setdefault("content", {"application/json": {"schema": error_ref}})
                    if code in HEADERS:
                        response.setdefault("headers", HEADERS[code])
            op["responses"] = dict(sorted(responses.items()))
    schemas = doc.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION:
        schemas.pop(name, None)
    if keyed:
        doc["components"].setdefault("securitySchemes", {})[SCHEME] = SECURITY_SCHEME
    return doc


def _validates_beyond_names(op: dict[str, Any]) -> bool:
    """A body, a query or header parameter, or a path parameter that is not a plain string."""
    if "requestBody" in op:
        return True
    for parameter in op.get("parameters", []):
        if parameter.get("in") != "path" or parameter.get("schema", {}).get("type") != "string":
            return True
    return False
