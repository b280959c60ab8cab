"""The Runtime seam: ``load``, ``predict`` on a batch, ``signature``, ``unload``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from modelport.errors import InvalidInput

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a dimension of any size (the batch, first)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"inputs": [t.as_dict() for t in self.inputs], "outputs": [t.as_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data.get("inputs", [])),
            tuple(TensorSpec.from_dict(t) for t in data.get("outputs", [])),
        )

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


class Runtime(Protocol):
    """One loaded model version. Instances are created empty, then ``load``-ed once."""

    framework: ClassVar[str]
    # Optional class attribute ``releases_gil`` (default True): False runs the runtime in a worker
    # process of its own (see runtimes/process.py), for pure-Python models.

    @classmethod
    def recognise(cls, path: Path) -> bool:
        """True when the file's content (never its name) is this framework's model format."""

    def load(self, artifact_dir: Path) -> None: ...

    def signature(self) -> Signature: ...

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run a batch. ``outputs`` limits what is computed or returned; ``None`` means all."""

    def unload(self) -> None: ...


def find_model_file(artifact_dir: Path, runtime: type[Runtime]) -> Path:
    """The one file in ``artifact_dir`` that ``runtime`` recognises."""
    matches = [p for p in sorted(artifact_dir.rglob("*")) if p.is_file() and runtime.recognise(p)]
    if not matches:
        raise InvalidInput(f"no {runtime.framework} model file in the artifact")
    if len(matches) > 1:
        names = ", ".join(str(p.relative_to(artifact_dir)) for p in matches)
        raise InvalidInput(f"several {runtime.framework} model files in the artifact: {names}")
    return matches[0]


def single_input(inputs: Tensors, spec: Signature) -> np.ndarray:
    """Tabular runtimes take one 2-D input; check it against the signature."""
    expected = spec.inputs[0]
    if len(inputs) != 1 or expected.name not in inputs:
        raise InvalidInput(f"expected exactly one input named {expected.name!r}", field="inputs")
    array = inputs[expected.name]
    width = expected.shape[1]
    if array.ndim != 2 or (width != -1 and array.shape[1] != width):
        raise InvalidInput(
            f"input {expected.name!r} must have shape [-1, {width}], got {list(array.shape)}", field="inputs"
        )
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {expected.name!r} must be numeric", field="inputs")
    return array


def select(outputs: Tensors, wanted: Sequence[str] | None) -> Tensors:
    if wanted is None:
        return outputs
    unknown = [n for n in wanted if n not in outputs]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; available {sorted(outputs)}", field="outputs")
    return {n: outputs[n] for n in wanted}


class BoosterRuntime:
    """What the gradient-boosting runtimes share: a booster, its task, and a tabular signature.

    Subclasses set ``framework``, implement ``recognise`` and ``load`` (which sets ``_booster``,
    ``_task`` and ``_signature``) and ``_raw_predict`` (the booster's own output for a 2-D input).
    """

    framework: ClassVar[str]

    def __init__(self) -> None:
        self._booster: Any = None
        self._task = "regression"
        self._signature: Signature | None = None

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        x = single_input(inputs, self.signature())
        return tabular_outputs(self._raw_predict(x), self._task, len(x), outputs)

    def unload(self) -> None:
        self._booster = None


def tabular_signature(width: int, task: str, classes: int = 2) -> Signature:
    """One FP64 input of ``width`` features; outputs by ``task``: ``binary`` and ``multiclass`` give
    ``predict`` (INT64 labels) and ``predict_proba``, ``labels`` only labels, ``regression`` FP64 values."""
    outputs = [TensorSpec("predict", "FP64" if task == "regression" else "INT64", (-1,))]
    if task in ("binary", "multiclass"):
        outputs.append(TensorSpec("predict_proba", "FP64", (-1, 2 if task == "binary" else classes)))
    return Signature((TensorSpec("input-0", "FP64", (-1, width)),), tuple(outputs))


def tabular_outputs(raw: np.ndarray, task: str, rows: int, wanted: Sequence[str] | None) -> Tensors:
    """Boosters' raw predictions (probability of class 1, class probabilities, labels or values) as the
    outputs ``tabular_signature`` promises."""
    raw = np.asarray(raw, dtype=np.float64)
    if task == "binary":
        return select(
            classifier_outputs((raw > 0.5).astype(np.int64), np.column_stack([1.0 - raw, raw])), wanted
        )
    if task == "multiclass":
        proba = raw.reshape(rows, -1)
        return select(classifier_outputs(proba.argmax(axis=1).astype(np.int64), proba), wanted)
    if task == "labels":
        return select(classifier_outputs(raw.astype(np.int64), None), wanted)
    return select({"predict": raw}, wanted)


def classifier_outputs(labels: np.ndarray, proba: np.ndarray | None) -> Tensors:
    out: Tensors = {"predict": labels}
    if proba is not None:
        out["predict_proba"] = proba
    return out
