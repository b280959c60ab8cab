"""XGBoost boosters saved in XGBoost's own JSON or UBJSON format (no pickle)."""

from __future__ import annotations

import json
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


class XGBoostRuntime:
    framework: ClassVar[str] = "xgboost"

    def __init__(self) -> None:
        self._booster: Any = None
        self._objective = ""
        self._classes = 0
        self._signature: Signature | None = None

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            head = f.read(64).lstrip()
        return head.startswith(b"{") and b"learner" in head

    def load(self, artifact_dir: Path) -> None:
        import xgboost

        path = find_model_file(artifact_dir, type(self))
        try:
            self._booster = xgboost.Booster(model_file=str(path))
        except xgboost.core.XGBoostError as exc:
            raise LoadError(f"xgboost could not load the model: {str(exc).splitlines()[0][:300]}") from None
        self._booster.set_param({"nthread": 1})
        learner = json.loads(self._booster.save_config())["learner"]
        self._objective = learner["objective"]["name"]
        self._classes = int(learner["learner_model_param"].get("num_class", "0"))
        width = self._booster.num_features()
        outputs: list[TensorSpec] = []
        if self._objective.startswith(("multi:", "binary:")):
            n = max(self._classes, 2)
            outputs.append(TensorSpec("predict", "INT64", (-1,)))
            if self._objective in ("multi:softprob", "binary:logistic"):
                outputs.append(TensorSpec("predict_proba", "FP64", (-1, n)))
        else:
            outputs.append(TensorSpec("predict", "FP64", (-1,)))
        self._signature = Signature((TensorSpec("input-0", "FP64", (-1, width)),), tuple(outputs))

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        import xgboost

        x = single_input(inputs, self.signature())
        raw = np.asarray(self._booster.predict(xgboost.DMatrix(x)), dtype=np.float64)
        if self._objective == "multi:softprob":
            proba = raw.reshape(len(x), -1)
            return select(classifier_outputs(proba.argmax(axis=1).astype(np.int64), proba), outputs)
        if self._objective == "binary:logistic":
            proba = np.column_stack([1.0 - raw, raw])
            return select(classifier_outputs((raw > 0.5).astype(np.int64), proba), outputs)
        if self._objective.startswith(("multi:", "binary:")):
            return select(classifier_outputs(raw.astype(np.int64), None), outputs)
        return select({"predict": raw}, outputs)

    def unload(self) -> None:
        self._booster = None
