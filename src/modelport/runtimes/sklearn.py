"""scikit-learn estimators stored with skops (a zip of JSON + .npy; nothing is unpickled)."""

from __future__ import annotations

import json
import zipfile
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

# skops constructs these without running code from the file; anything else stays refused.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class SklearnRuntime:
    framework: ClassVar[str] = "sklearn"

    def __init__(self) -> None:
        self._model: Any = None
        self._signature: Signature | None = None

    @classmethod
    def recognise(cls, path: Path) -> bool:
        if not zipfile.is_zipfile(path):
            return False
        try:
            with zipfile.ZipFile(path) as zf:
                if "schema.json" not in zf.namelist():
                    return False
                schema = json.loads(zf.read("schema.json"))
        except (zipfile.BadZipFile, ValueError, OSError):
            return False
        return isinstance(schema, dict) and "protocol" in schema and "__class__" in schema

    def load(self, artifact_dir: Path) -> None:
        import skops.io

        path = find_model_file(artifact_dir, type(self))
        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_MODULE_PREFIXES)]
        if refused:
            raise LoadError(f"skops file references types outside scikit-learn/numpy/scipy: {refused}")
        self._model = skops.io.load(path, trusted=untrusted)
        if not hasattr(self._model, "predict"):
            raise LoadError(f"{type(self._model).__name__} has no predict method")
        self._signature = self._derive_signature()

    def _derive_signature(self) -> Signature:
        model = self._model
        width = int(getattr(model, "n_features_in_", -1))
        outputs = []
        classes = getattr(model, "classes_", None)
        if classes is not None:
            label_type = _datatype_of(np.asarray(classes))
            outputs.append(TensorSpec("predict", label_type, (-1,)))
            if _has_proba(model):
                outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(classes))))
        else:
            outputs.append(TensorSpec("predict", "FP64", (-1,)))
        return Signature((TensorSpec("input-0", "FP64", (-1, width)),), tuple(outputs))

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        x = single_input(inputs, self.signature())
        want = set(outputs) if outputs is not None else set(self.signature().output_names())
        labels = np.asarray(self._model.predict(x)) if "predict" in want else np.empty(0)
        if getattr(self._model, "classes_", None) is None:
            return select({"predict": labels.astype(np.float64)}, outputs)
        proba = None
        if "predict_proba" in want and _has_proba(self._model):
            proba = np.asarray(self._model.predict_proba(x), dtype=np.float64)
        if labels.dtype.kind in "iub":
            labels = labels.astype(np.int64)
        return select(classifier_outputs(labels, proba), outputs)

    def unload(self) -> None:
        self._model = None


def _has_proba(model: Any) -> bool:
    try:
        return hasattr(model, "predict_proba")
    except AttributeError:  # e.g. SVC(probability=False) raises from the property
        return False


def _datatype_of(values: np.ndarray) -> str:
    if values.dtype.kind in "iub":
        return "INT64"
    if values.dtype.kind == "f":
        return "FP64"
    return "BYTES"
