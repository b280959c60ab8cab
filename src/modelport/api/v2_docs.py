"""The Open Inference Protocol's inference request and response, as JSON schemas for ``/openapi.json``.

These models only document the wire format: requests are decoded by ``protocol/v2.py`` on the raw
ASGI fast path, never through them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from modelport.api.openapi import REF, errors

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class InferenceInput(BaseModel):
    name: str
    shape: list[int] = Field(description="dimensions (non-negative)")
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: N when the data follows the JSON header as binary"
    )
    data: list[Any] | None = Field(
        None, description="the elements in row-major order, flat or nested; absent with binary_data_size"
    )


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: true for binary output")


class InferenceRequest(BaseModel):
    """A V2 inference request (JSON, or the JSON header of a binary request)."""

    id: str | None = Field(None, description="echoed in the response")
    parameters: dict[str, Any] | None = Field(
        None, description="timeout (microseconds), binary_data_output: true for binary outputs"
    )
    inputs: list[InferenceInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = Field(None, description="the outputs wanted; all when absent")


class InferenceOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: N when the data follows the JSON header as binary"
    )
    data: list[Any] | None = Field(None, description="flat, row-major; absent for binary outputs")


class InferenceResponse(BaseModel):
    """A V2 inference response (JSON, or the JSON header of a binary response)."""

    model_name: str
    model_version: str = Field(description="the version that answered")
    id: str | None = None
    outputs: list[InferenceOutput]


BINARY = {
    "schema": {"type": "string", "format": "binary"},
}
INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": REF.format(model=InferenceRequest.__name__)}},
            "application/octet-stream": BINARY,
        },
        "description": "JSON, or binary tensors: a JSON header of Inference-Header-Content-Length bytes, "
        "then each input's bytes in order",
    },
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "the length of the JSON header of a binary request",
        }
    ],
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "the outputs (binary ones follow a JSON header of Inference-Header-Content-Length)",
        "content": {"application/octet-stream": BINARY},
    },
    **errors(413, 503, 504),
}
