"""Open Inference Protocol (v2) request/response codec, JSON and the binary tensor data extension.

Decoding reads raw bytes with orjson (and numpy for binary tensors); no pydantic round trip per request.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelport.errors import InferenceFailed, InvalidInput
from modelport.serving.datatypes import WIRE_ITEMSIZE, bf16_to_float32, numpy_dtype, v2_datatype

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 8
MAX_ELEMENTS = 16 * 1024 * 1024  # per input tensor, unless the server is configured otherwise
NON_FINITE = re.compile(rb"(?i)(nan|inf|infinity)(?![a-z0-9_])")  # JavaScript's and Python's spellings


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None


@dataclass
class InferenceRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    @property
    def binary_output_default(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


def _fail(message: str, field: str | None = "inputs") -> InvalidInput:
    return InvalidInput(message, field=field)


def _shape(raw: Any, name: str, max_elements: int) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_DIMS:
        raise _fail(f"input {name!r}: shape must be a list of at most {MAX_DIMS} dimensions")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise _fail(f"input {name!r}: shape must hold non-negative integers")
    if math.prod(raw) > max_elements:
        raise _fail(f"input {name!r}: {math.prod(raw)} elements; the limit is {max_elements}")
    return tuple(raw)


def _decode_bytes_elements(buf: memoryview, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise _fail(f"input {name!r}: BYTES data ends early")
        (length,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + length > len(buf):
            raise _fail(f"input {name!r}: BYTES element overruns its data")
        out[i] = bytes(buf[pos : pos + length])
        pos += length
    if pos != len(buf):
        raise _fail(f"input {name!r}: BYTES data has {len(buf) - pos} trailing bytes")
    return out


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise _fail("input data must be a list")
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [data]
    while stack:  # iterative, so that deep nesting cannot exhaust the interpreter stack
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _json_array(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    flat = _flatten(data)
    count = math.prod(shape)
    if len(flat) != count:
        raise _fail(f"input {name!r}: shape {list(shape)} needs {count} elements, got {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str | bytes) for v in flat):
            raise _fail(f"input {name!r}: BYTES data must be strings")
        arr = np.empty(count, dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    try:
        array = np.array(flat)
    except (ValueError, OverflowError, TypeError) as exc:
        raise _fail(f"input {name!r}: data does not fit {datatype}: {exc}") from None
    kind = array.dtype.kind
    if datatype == "BOOL":
        if kind != "b" and count:
            raise _fail(f"input {name!r}: BOOL data must be true/false")
    elif kind not in "iuf" and count:  # strings, nulls, objects; true/false mixed with numbers count as 1/0
        raise _fail(f"input {name!r}: {datatype} data must be numbers")
    target = numpy_dtype(datatype)
    if target.kind in "iu" and kind in "iu" and count:  # integer casts wrap silently: check the range
        info = np.iinfo(target.type)  # type: ignore[type-var]
        if array.min() < info.min or array.max() > info.max:
            raise _fail(f"input {name!r}: data does not fit {datatype} (out of range)")
    try:
        with np.errstate(over="raise", invalid="raise"):  # 1e30 as INT64 is an error, not a wrapped value
            return array.astype(target, copy=False).reshape(shape)
    except (ValueError, OverflowError, TypeError, FloatingPointError):
        raise _fail(f"input {name!r}: data does not fit {datatype} (out of range or not a number)") from None


def _json_error(text: bytes, exc: orjson.JSONDecodeError) -> str:
    """What is wrong with a JSON text, in words a client can act on."""
    if NON_FINITE.match(text, exc.pos):
        return (
            f"malformed JSON at byte {exc.pos}: NaN and Infinity are not valid JSON numbers; send finite "
            "numbers, or the tensor as binary data (binary tensor extension) to carry non-finite values"
        )
    return f"malformed JSON: {exc.msg} at byte {exc.pos}"


def decode_request(
    body: bytes, header_length: int | None, max_elements: int = MAX_ELEMENTS
) -> InferenceRequest:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _fail("Inference-Header-Content-Length is outside the body", field=None)
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise _fail(_json_error(head, exc), field=None) from None
    if not isinstance(doc, dict):
        raise _fail("request must be a JSON object", field=None)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _fail("request needs a non-empty 'inputs' list")
    params = doc.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise _fail("'parameters' must be an object", field="parameters")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail("'id' must be a string", field="id")

    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for raw in raw_inputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise _fail("each input needs a 'name'")
        name = raw["name"]
        if name in inputs:
            raise _fail(f"input {name!r} appears twice")
        datatype = raw.get("datatype")
        if not isinstance(datatype, str):
            raise _fail(f"input {name!r} needs a 'datatype'")
        dtype = numpy_dtype(datatype)
        shape = _shape(raw.get("shape"), name, max_elements)
        in_params = raw.get("parameters") or {}
        size = in_params.get("binary_data_size") if isinstance(in_params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise _fail(f"input {name!r}: binary_data_size runs past the body")
            chunk = binary[offset : offset + size]
            offset += size
            count = math.prod(shape)
            if datatype == "BYTES":
                array = _decode_bytes_elements(chunk, count, name).reshape(shape)
            else:
                if size != count * WIRE_ITEMSIZE.get(datatype, dtype.itemsize):
                    raise _fail(f"input {name!r}: {size} bytes do not make shape {list(shape)} of {datatype}")
                if datatype == "BF16":
                    array = bf16_to_float32(chunk).reshape(shape)
                else:
                    array = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        elif "data" in raw:
            array = _json_array(raw["data"], datatype, shape, name)
        else:
            raise _fail(f"input {name!r} has neither 'data' nor binary_data_size")
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise _fail("the body has binary data no input claims", field=None)

    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise _fail("'outputs' must be a list", field="outputs")
        outputs = []
        for out in doc["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise _fail("each requested output needs a 'name'", field="outputs")
            out_params = out.get("parameters") or {}
            binary_flag = out_params.get("binary_data") if isinstance(out_params, dict) else None
            outputs.append(RequestedOutput(out["name"], None if binary_flag is None else bool(binary_flag)))
    return InferenceRequest(inputs, datatypes, request_id, params, outputs)


def _bytes_payload(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _json_data(array: np.ndarray, datatype: str, name: str) -> list[Any]:
    flat = array.reshape(-1)
    if flat.dtype.kind in "fc" and not np.isfinite(flat).all():
        raise InferenceFailed(
            f"output {name!r} holds NaN or infinite values, which JSON cannot carry; "
            "ask for it as binary data (parameters.binary_data)"
        )
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()  # type: ignore[no-any-return]


def encode_response(
    *,
    model_name: str,
    model_version: int,
    request: InferenceRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """Returns the body and, when it carries binary tensors, the JSON header's length."""
    binary_for = {o.name: o.binary for o in request.outputs or []}
    default_binary = request.binary_output_default
    out_docs = []
    blobs: list[bytes] = []
    for name, array in outputs.items():
        datatype = v2_datatype(array.dtype)
        doc: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = binary_for.get(name)
        if binary if binary is not None else default_binary:
            blob = (
                _bytes_payload(array)
                if datatype == "BYTES"
                else np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            )
            doc["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            doc["data"] = _json_data(array, datatype, name)
        out_docs.append(doc)
    response: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = out_docs
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
