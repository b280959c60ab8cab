"""LightGBM boosters saved in LightGBM's text model format."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from modelport.errors import LoadError
from modelport.runtimes.base import BoosterRuntime, LoadOptions, find_model_file, tabular_signature


class LightGBMRuntime(BoosterRuntime):
    framework: ClassVar[str] = "lightgbm"

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            return f.read(16).startswith(b"tree\nversion=")

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        import lightgbm

        path = find_model_file(artifact_dir, type(self))
        try:
            self._booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise LoadError(f"lightgbm could not load the model: {str(exc)[:300]}") from None
        objective = _header_value(path, "objective").split(" ")[0]
        classes = int(_header_value(path, "num_class") or 1)
        if objective == "binary":
            self._task = "binary"
        elif objective in ("multiclass", "multiclassova"):
            self._task = "multiclass"
        else:
            self._task = "regression"
        self._signature = tabular_signature(self._booster.num_feature(), self._task, classes)

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.predict(x, num_threads=1))


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
