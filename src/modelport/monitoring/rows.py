"""The prediction log's rows: what an answered request leaves in the buffer (``Logged``), and how a
slice of them becomes columns of a segment (``columns``, ``table``), tensors as JSON text."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

from modelport.errors import InvalidName
from modelport.monitoring.segments import schema

if TYPE_CHECKING:
    import pyarrow

MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Logged(NamedTuple):
    """What the log keeps of an ``InferenceEvent`` until it is written."""

    model: str
    version: int | None
    surface: str
    duration: float
    request_id: str | None
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]


ENCODE_SLICE = 128  # events encoded between two hand-overs of the GIL


@dataclass
class Rows:
    request_id: list[str] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    version: list[int] = field(default_factory=list)
    surface: list[str] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    inputs: list[bytes] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)

    def extend(self, other: Rows) -> None:
        for name in ("request_id", "time", "version", "surface", "latency", "inputs", "outputs"):
            getattr(self, name).extend(getattr(other, name))


def columns(model: str, items: list[tuple[float, Logged]]) -> Rows:
    """The rows of one model's events, column by column; raises if any event cannot be encoded."""
    check_name(model)
    events = [event for _, event in items]
    versions = [int(event.version) for event in events]  # type: ignore[arg-type]  # None raises
    if not all(0 <= v < 2**31 for v in versions):
        raise ValueError("a version out of range")
    return Rows(
        request_id=[str(e.request_id) if e.request_id else uuid.uuid4().hex for e in events],
        time=[at for at, _ in items],
        version=versions,
        surface=[str(e.surface) for e in events],
        latency=[float(e.duration) for e in events],
        inputs=encode_many([e.inputs for e in events]),
        outputs=encode_many([e.outputs for e in events]),
    )


def check_name(model: str) -> None:
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
        raise InvalidName(f"invalid model name {model!r}", field="model")


def arrow_table(rows: Rows) -> pyarrow.Table:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            pa.array(rows.request_id, pa.string()),
            pa.array(rows.time, pa.float64()),
            pa.array(rows.version, pa.int32()),
            pa.array(rows.surface, pa.string()),
            pa.array(rows.latency, pa.float64()),
            pa.array(rows.inputs, pa.string()),
            pa.array(rows.outputs, pa.string()),
        ],
        schema=schema(),
    )


def encode_many(many: list[Mapping[str, Any]]) -> list[bytes]:
    """``encode_tensors`` of each, in one orjson call when every tensor is numeric (the common case):
    the list's JSON is cut between its objects, which is safe because numbers hold no brace and a name
    holding ``},{`` makes the count of pieces wrong (then each is encoded alone)."""
    try:
        if all(type(t) is dict for t in many):
            pieces = orjson.dumps(many, option=_ORJSON)[2:-2].split(b"},{")
            if len(pieces) == len(many):
                return [b"{" + piece + b"}" for piece in pieces]
    except orjson.JSONEncodeError:
        pass
    return [encode_tensors(t) for t in many]


def encode_tensors(tensors: Mapping[str, Any]) -> bytes:
    """A JSON object of the tensors as nested lists: numbers as they are (NaN and infinities as null),
    BYTES as text (UTF-8, undecodable bytes replaced)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping, not {type(tensors).__name__}")
    try:  # numeric, native, contiguous arrays (the common case): orjson alone, 4x faster
        return orjson.dumps(tensors, option=_ORJSON)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps({name: _plain(value) for name, value in tensors.items()}, option=_ORJSON)
    except orjson.JSONEncodeError:
        return orjson.dumps({str(name): _listed(value) for name, value in tensors.items()}, default=str)


def _plain(value: Any) -> Any:
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind in "OSU":
        return _texts(array)
    if kind in "biuf" and array.ndim > 0 and array.dtype.isnative:
        return array if array.flags.c_contiguous else np.ascontiguousarray(array)
    return array.tolist()


def _listed(value: Any) -> Any:
    array = np.asarray(value)
    return _texts(array) if array.dtype.kind in "OSU" else array.tolist()


def _texts(array: np.ndarray) -> Any:
    if array.dtype.kind == "U":
        return array.tolist()
    flat = [
        v.decode("utf-8", "replace")
        if isinstance(v, bytes | bytearray)
        else v
        if isinstance(v, str)
        else str(v)
        for v in array.ravel().tolist()
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape).tolist()
