"""XGBoost boosters saved in XGBoost's own JSON or UBJSON format (no pickle)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from modelport.errors import LoadError
from modelport.runtimes.base import (
    Signature,
    Tensors,
    find_model_file,
    single_input,
    tabular_outputs,
    tabular_signature,
)


class XGBoostRuntime:
    framework: ClassVar[str] = "xgboost"

    def __init__(self) -> None:
        self._booster: Any = None
        self._task = "regression"
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
        objective = learner["objective"]["name"]
        classes = int(learner["learner_model_param"].get("num_class", "0"))
        if objective in ("multi:softprob", "binary:logistic"):
            self._task = "multiclass" if objective.startswith("multi") else "binary"
        elif objective.startswith(("multi:", "binary:")):
            self._task = "labels"  # softmax / hinge: labels without probabilities
        else:
            self._task = "regression"
        self._signature = tabular_signature(self._booster.num_features(), self._task, classes)

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        import xgboost

        x = single_input(inputs, self.signature())
        return tabular_outputs(self._booster.predict(xgboost.DMatrix(x)), self._task, len(x), outputs)

    def unload(self) -> None:
        self._booster = None
