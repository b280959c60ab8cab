"""Keras 3 models (``.keras`` archives), run on Keras' torch backend: TensorFlow is never needed.

A ``.keras`` archive names the classes and functions Keras builds the model from. ``vet`` reads its
``config.json`` before Keras does and refuses what would run code that is not Keras' own: ``Lambda`` layers
(Python bytecode), layers that wrap foreign programs, and custom (registered) classes and functions.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, LoadError, UnsafeFormat
from modelport.runtimes.base import (
    Batching,
    Capabilities,
    LoadOptions,
    MemoryUse,
    Placement,
    Signature,
    Tensors,
    TensorSpec,
    TorchModelRuntime,
    find_model_file,
    first_line,
    refuse_unread_options,
    require_modules,
    select,
)
from modelport.serving.datatypes import numpy_dtype

require_modules("keras", ("keras", "torch"), "keras")

# layers that run a program Keras does not describe: Python bytecode, a pickled torch module, JAX or
# TensorFlow functions
CODE_LAYERS = {
    "Lambda": "Python code (a Lambda layer)",
    "TorchModuleWrapper": "a pickled torch module (a TorchModuleWrapper layer)",
    "JaxLayer": "a JAX function (a JaxLayer)",
    "FlaxLayer": "a Flax module (a FlaxLayer)",
    "TFSMLayer": "a TensorFlow SavedModel (a TFSMLayer)",
}
# the Keras modules a function saved by name only ("module": "builtins") is looked up in
BUILTIN_FUNCTION_MODULES = ("activations", "losses", "metrics")
DTYPE_REFUSAL = (
    "the keras runtime runs a model in the dtypes it was saved with; dtype {!r} is not supported "
    "(save the model with a Keras dtype policy instead)"
)
REBUILD = "rebuild the model with Keras' built-in layers, or export it (ONNX, torch.export)"
_V2 = {
    "bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "bfloat16": "BF16", "float32": "FP32", "float64": "FP64",
}  # fmt: skip


def import_keras() -> Any:
    """Keras on the torch backend (the backend is chosen once per process, when Keras is first imported)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    backend = keras.backend.backend()
    if backend != "torch":
        raise LoadError(
            f"Keras was imported with the {backend!r} backend in this server; modelport runs Keras models on "
            "the torch backend (unset KERAS_BACKEND)"
        )
    return keras


class KerasRuntime(TorchModelRuntime):
    framework: ClassVar[str] = "keras"
    capabilities: ClassVar[Capabilities] = Capabilities(
        placement=Placement.THREAD, batching=Batching.ROWS, devices=("cuda", "cpu")
    )

    def __init__(self) -> None:
        super().__init__()
        self._signature: Signature | None = None

    @classmethod
    def recognise(cls, path: Path) -> bool:
        try:
            with path.open("rb") as f:
                if f.read(4) != b"PK\x03\x04":
                    return False
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (OSError, EOFError, ValueError, zipfile.BadZipFile):
            return False
        weights = {"model.weights.h5", "model.weights.npz"}
        return {"config.json", "metadata.json"} <= names and bool(weights & names)

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        refuse_unread_options(cls.framework, options)
        if options.dtype not in (None, "float32"):
            raise InvalidInput(DTYPE_REFUSAL.format(options.dtype), field="dtype")
        path = find_model_file(artifact_dir, cls)
        with zipfile.ZipFile(path) as zf:
            try:
                config = json.loads(zf.read("config.json"))
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("the .keras archive's config.json is not JSON") from None
        keras = import_keras()
        check_config(config, lambda name: _is_builtin_function(keras, name))
        try:
            _load(keras, path, "cpu")
        except Exception as exc:  # Keras raises ValueError/TypeError and its backends' own errors
            raise InvalidInput(f"Keras cannot load the model: {first_line(exc)}") from None

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        from modelport.runtimes import torchkit

        if options.dtype not in (None, "float32"):
            raise LoadError(DTYPE_REFUSAL.format(options.dtype))
        torchkit.use_threads(options.threads)
        device = torchkit.device_of(options)
        keras = import_keras()
        path = find_model_file(artifact_dir, type(self))
        meter = torchkit.GpuMeter(device)
        with torchkit.out_of_memory_as_error(device):
            try:
                model = _load(keras, path, str(device))
            except Exception as exc:
                raise LoadError(f"Keras could not load the model: {first_line(exc)}") from None
        self._gpu_bytes = meter.stop()
        self._signature = _signature(model)
        self._model = model
        self._device = device

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        import torch

        from modelport.runtimes import torchkit

        keras = import_keras()
        spec = self.signature()
        wanted = spec.check_outputs(outputs)
        assert self._device is not None, "load() first"
        arrays = []
        for t in spec.inputs:
            if t.name not in inputs:
                raise InvalidInput(f"inputs must be {[s.name for s in spec.inputs]}", field="inputs")
            array = inputs[t.name]
            if array.dtype == object or array.dtype.kind not in "biuf":
                raise InvalidInput(f"input {t.name!r} must be numeric ({t.datatype})", field="inputs")
            if array.ndim != len(t.shape) or any(
                d not in (-1, n) for d, n in zip(t.shape, array.shape, strict=True)
            ):
                raise InvalidInput(
                    f"input {t.name!r} must have shape {list(t.shape)}, got {list(array.shape)}",
                    field="inputs",
                )
            if not array.flags.writeable:  # torch warns about (and never writes) read-only buffers
                array = array.copy()
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            arrays.append(tensor.to(device=self._device, dtype=torchkit.V2_TO_TORCH[t.datatype]))
        if len(arrays) == 1:
            structured: Any = arrays[0]
        else:  # a functional model's inputs keep the structure (list, dict) they were built with
            structured = keras.tree.pack_sequence_as(self._model.input, arrays)
        try:
            with torch.no_grad(), keras.device(str(self._device)):
                result = self._model(structured, training=False)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InvalidInput(f"the model rejected the inputs: {first_line(exc)}", field="inputs") from None
        flat = keras.tree.flatten(result)
        if len(flat) != len(spec.outputs) or not all(isinstance(t, torch.Tensor) for t in flat):
            raise InvalidInput(
                f"the model returned {len(flat)} values; it declares {len(spec.outputs)} tensors"
            )
        out = {t.name: _as_declared(torchkit.to_numpy(v), t) for t, v in zip(spec.outputs, flat, strict=True)}
        return select(out, wanted)

    def memory(self) -> MemoryUse:
        if self._model is None or self._device is None:
            return MemoryUse()
        if self._device.type == "cuda":
            return MemoryUse(gpu=self._gpu_bytes)
        return MemoryUse(host=sum(w.value.numel() * w.value.element_size() for w in self._model.weights))


def check_config(config: Any, is_builtin_function: Any) -> None:
    """Refuse a model config that names code Keras does not hold: see the module's docstring. The top
    model's ``compile_config`` (losses, metrics) is skipped: it is never read, models load uncompiled."""
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k != "compile_config"}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        class_name = item.get("class_name")
        if not isinstance(class_name, str):
            continue
        if class_name in CODE_LAYERS:
            raise UnsafeFormat(
                f"the model holds {CODE_LAYERS[class_name]}, which modelport never runs; {REBUILD}"
            )
        if class_name == "__lambda__":
            raise UnsafeFormat(
                f"the model holds Python code (a lambda), which modelport never runs; {REBUILD}"
            )
        if class_name.startswith("__") and "module" not in item:
            continue  # Keras' own markers: __keras_tensor__, __tensor__, __numpy__, ...
        module, registered = item.get("module"), item.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            raise UnsafeFormat(
                f"the model uses the custom object {registered!r}, whose Python code modelport never runs; "
                f"{REBUILD}"
            )
        if class_name == "function" and module == "builtins":
            name = item.get("config")
            if not (isinstance(name, str) and is_builtin_function(name)):
                raise UnsafeFormat(
                    f"the model uses the function {str(name)[:100]!r}, which is not one of Keras' own; "
                    f"{REBUILD}"
                )
            continue
        if not (isinstance(module, str) and (module == "keras" or module.startswith("keras."))):
            raise UnsafeFormat(
                f"the model uses {class_name[:100]!r} from {str(module)[:100]!r}, a class that is not Keras' "
                f"own (a custom object), whose Python code modelport never runs; {REBUILD}"
            )


def _is_builtin_function(keras: Any, name: str) -> bool:
    return name.isidentifier() and any(
        callable(getattr(getattr(keras, m), name, None)) for m in BUILTIN_FUNCTION_MODULES
    )


def _load(keras: Any, path: Path, device: str) -> Any:
    """``keras.saving.load_model`` wants a name ending in ``.keras``: stored files keep their upload name."""
    with keras.device(device):
        if path.name.endswith(".keras"):
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        with tempfile.TemporaryDirectory(prefix="keras-") as tmp:
            link = Path(tmp) / "model.keras"
            link.symlink_to(path.resolve())
            return keras.saving.load_model(link, safe_mode=True, compile=False)


def _signature(model: Any) -> Signature:
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise LoadError("the Keras model has no defined inputs; build it on keras.Input(...)") from None
    return Signature(_specs(inputs, "input"), _specs(outputs, "output"))


def _specs(tensors: list[Any], kind: str) -> tuple[TensorSpec, ...]:
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    for i, t in enumerate(tensors):
        history = getattr(t, "_keras_history", None)
        name = getattr(getattr(history, "operation", None), "name", None) or t.name or f"{kind}-{i}"
        if name in seen:
            name = f"{name}-{i}"
        seen.add(name)
        datatype = _V2.get(str(t.dtype))
        if datatype is None:
            raise LoadError(
                f"the Keras model's {kind} {name!r} is {t.dtype}, which has no tensor datatype here"
            )
        if kind == "output" and datatype == "BF16":
            datatype = "FP32"  # numpy has no bfloat16
        specs.append(TensorSpec(name, datatype, tuple(-1 if d is None else int(d) for d in t.shape)))
    return tuple(specs)


def _as_declared(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    wanted = numpy_dtype(spec.datatype)
    return array if array.dtype == wanted else array.astype(wanted)
