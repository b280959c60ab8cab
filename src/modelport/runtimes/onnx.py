"""ONNX models through onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, LoadError
from modelport.runtimes.base import LoadOptions, RuntimeBase, Signature, Tensors, TensorSpec, find_model_file

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
# ZipMap (skl2onnx's default classifier probabilities): a sequence of {label: probability} per row, served
# as a [rows, classes] tensor whose columns follow the map's key order (the model's class labels)
_PROBABILITY_MAPS = {
    "seq(map(int64,tensor(float)))": "FP32",
    "seq(map(string,tensor(float)))": "FP32",
    "seq(map(int64,tensor(double)))": "FP64",
    "seq(map(string,tensor(double)))": "FP64",
}
# protobuf field tags that follow ModelProto.ir_version (field 1, varint) in a serialised model
_MODEL_PROTO_FIELDS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A}


class OnnxRuntime(RuntimeBase):
    framework: ClassVar[str] = "onnx"

    def __init__(self) -> None:
        self._session: Any = None
        self._signature: Signature | None = None
        self._maps: dict[str, np.dtype[Any]] = {}  # outputs that come back as sequences of maps

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            head = f.read(16)
        if len(head) < 3 or head[0] != 0x08:
            return False
        i = 1
        while i < len(head) and head[i] & 0x80:  # skip the ir_version varint
            i += 1
        return i + 1 < len(head) and head[i + 1] in _MODEL_PROTO_FIELDS

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        import onnxruntime as ort

        path = find_model_file(artifact_dir, type(self))
        _check_external_data(path, artifact_dir)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = 1
        session_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise LoadError(f"onnxruntime could not load the model: {_first_line(exc)}") from None
        inputs = tuple(_spec(i) for i in self._session.get_inputs())
        outputs: list[TensorSpec] = []
        unserved: list[tuple[str, str]] = []
        for o in self._session.get_outputs():
            if o.type in _ORT_TYPES:
                outputs.append(_spec(o))
            elif o.type in _PROBABILITY_MAPS:
                datatype = _PROBABILITY_MAPS[o.type]
                outputs.append(TensorSpec(o.name, datatype, (-1, -1)))
                self._maps[o.name] = np.dtype(np.float32 if datatype == "FP32" else np.float64)
            else:
                unserved.append((o.name, f"{o.type} is not a tensor and has no tensor form here"))
        if not outputs:
            raise LoadError("the ONNX model has no tensor outputs")
        self._signature = Signature(inputs, tuple(outputs), tuple(unserved))

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        names = self.signature().check_outputs(outputs)
        try:
            results = self._session.run(names, inputs)
        except Exception as exc:  # shape/type problems surface here as onnxruntime errors
            raise InvalidInput(f"onnxruntime rejected the inputs: {_first_line(exc)}") from None
        return {n: self._tensor(n, r) for n, r in zip(names, results, strict=True)}

    def _tensor(self, name: str, result: Any) -> np.ndarray:
        dtype = self._maps.get(name)
        if dtype is None:
            return np.asarray(result)
        if not result:
            return np.zeros((0, 0), dtype=dtype)
        labels = list(result[0])
        return np.asarray([[row[k] for k in labels] for row in result], dtype=dtype)

    def unload(self) -> None:
        self._session = None
        self._maps = {}


def _check_external_data(path: Path, artifact_dir: Path) -> None:
    """Tensors stored outside the .onnx file must stay inside the version's own directory."""
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors
    except ImportError:  # without the onnx package, onnxruntime's own checks are all there is
        return
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common type
        raise LoadError(f"the ONNX file cannot be parsed: {type(exc).__name__}") from None
    root = artifact_dir.resolve()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (path.parent / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise LoadError(f"tensor {tensor.name!r} points outside the artifact for its external data")


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, "BYTES"), shape)


def _first_line(exc: Exception) -> str:
    # onnxruntime messages can carry absolute paths of the artifact; keep the gist only.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(" : ")[-1][:300]
