"""XGBoost boosters saved in XGBoost's own JSON or UBJSON format (no pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelport.errors import LoadError
from modelport.runtimes.base import BoosterRuntime, LoadOptions, find_model_file, tabular_signature


class XGBoostRuntime(BoosterRuntime):
    framework: ClassVar[str] = "xgboost"

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            head = f.read(64).lstrip()
        return head.startswith(b"{") and b"learner" in head

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
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

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        import xgboost

        return np.asarray(self._booster.predict(xgboost.DMatrix(x)))
