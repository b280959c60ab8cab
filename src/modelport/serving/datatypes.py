"""Open Inference Protocol datatypes and their numpy equivalents."""

from __future__ import annotations

import numpy as np

from modelport.errors import InvalidInput

V2_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
    # numpy has no bfloat16: BF16 tensors are carried as float32 (exactly: bf16 is fp32's upper half)
    "BF16": np.dtype(np.float32),
}
_NUMPY_TO_V2 = {dt: name for name, dt in V2_TO_NUMPY.items() if name != "BF16"}
WIRE_ITEMSIZE = {"BF16": 2}  # bytes per element on the wire, where it differs from the numpy carrier


def bf16_to_float32(raw: memoryview | bytes) -> np.ndarray:
    """Little-endian bfloat16 elements as float32 (each is the upper 16 bits of a float32)."""
    halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
    return (halves << 16).view(np.float32)


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    try:
        return V2_TO_NUMPY[datatype]
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown datatype {datatype!r}", field="datatype") from None


def v2_datatype(dtype: np.dtype[np.generic]) -> str:
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return _NUMPY_TO_V2[np.dtype(dtype)]
    except KeyError:
        raise InvalidInput(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None
