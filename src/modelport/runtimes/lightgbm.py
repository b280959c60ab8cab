"""LightGBM boosters saved in LightGBM's text model format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import LoadError
from modelport.runtimes.base import (
    Signature,
    Tensors,
    TensorSpec,
    classifier_outputs,
    find_model_file,
    select,
    single_input,
)


class LightGBMRuntime:
    framework: ClassVar[str] = "lightgbm"

    def __init__(self) -> None:
        self._booster: Any = None
        self._objective = ""
        self._signature: Signature | None = None

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            return f.read(16).startswith(b"tree\nversion=")

    def load(self, artifact_dir: Path) -> None:
        import lightgbm

        path = find_model_file(artifact_dir, type(self))
        try:
            self._booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise LoadError(f"lightgbm could not load the model: {str(exc)[:300]}") from None
        self._objective = _header_value(path, "objective").split(" ")[0]
        classes = int(_header_value(path, "num_class") or 1)
        outputs: list[TensorSpec] = []
        if self._objective in ("binary", "multiclass", "multiclassova"):
            n = 2 if self._objective == "binary" else classes
            outputs += [TensorSpec("predict", "INT64", (-1,)), TensorSpec("predict_proba", "FP64", (-1, n))]
        else:
            outputs.append(TensorSpec("predict", "FP64", (-1,)))
        width = self._booster.num_feature()
        self._signature = Signature((TensorSpec("input-0", "FP64", (-1, width)),), tuple(outputs))

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        x = single_input(inputs, self.signature())
        raw = np.asarray(self._booster.predict(x, num_threads=1), dtype=np.float64)
        if self._objective == "binary":
            proba = np.column_stack([1.0 - raw, raw])
            return select(classifier_outputs((raw > 0.5).astype(np.int64), proba), outputs)
        if self._objective.startswith("multiclass"):
            return select(classifier_outputs(raw.argmax(axis=1).astype(np.int64), raw), outputs)
        return select({"predict": raw}, outputs)

    def unload(self) -> None:
        self._booster = None


def _header_value(path: Path, key: str) -> str:
    """Read ``key=value`` from the model's header (the lines before the first tree)."""
    prefix = key + "="
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("Tree="):
                break
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return ""
