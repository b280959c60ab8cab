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
    LoadOptions,
    RuntimeBase,
    Signature,
    Tensors,
    TensorSpec,
    classifier_outputs,
    find_model_file,
    select,
    single_input,
)

# Classifiers whose predict() is exactly classes_[argmax(predict_proba())]: when both outputs are asked
# for, one pass through the model (and its input validation) serves both.
ARGMAX_CLASSIFIERS = frozenset(
    {
        "LogisticRegression",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "GradientBoostingClassifier",
        "KNeighborsClassifier",
        "GaussianNB",
        "MLPClassifier",
    }
)
FORESTS = frozenset({"RandomForestClassifier", "ExtraTreesClassifier"})
# skops constructs these without running code from the file; anything else stays refused.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class SklearnRuntime(RuntimeBase):
    framework: ClassVar[str] = "sklearn"

    def __init__(self) -> None:
        self._model: Any = None
        self._signature: Signature | None = None
        self._labels_from_proba = False
        self._forest: Any = None  # a forest classifier whose trees we call directly (see _proba)
        self._before_forest: Any = None  # the pipeline steps in front of it, if any

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

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        import skops.io

        path = find_model_file(artifact_dir, type(self))
        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(TRUSTED_MODULE_PREFIXES)]
        if refused:
            raise LoadError(f"skops file references types outside scikit-learn/numpy/scipy: {refused}")
        self._use(skops.io.load(path, trusted=untrusted))

    def _use(self, model: Any) -> None:
        """Serve an estimator: derive the signature and the fast paths that apply to it."""
        self._model = model
        if not hasattr(self._model, "predict"):
            raise LoadError(f"{type(self._model).__name__} has no predict method")
        self._signature = self._derive_signature()
        final = self._model.steps[-1][1] if hasattr(self._model, "steps") else self._model
        self._labels_from_proba = type(final).__name__ in ARGMAX_CLASSIFIERS and _has_proba(self._model)
        if type(final).__name__ in FORESTS and getattr(final, "n_outputs_", 1) == 1:
            self._forest = final
            self._before_forest = self._model[:-1] if final is not self._model else None

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
        model = self._model
        want = set(outputs) if outputs is not None else set(self.signature().output_names())
        classes = getattr(model, "classes_", None)
        if classes is None:
            return select({"predict": np.asarray(model.predict(x), dtype=np.float64)}, outputs)
        proba = None
        if "predict_proba" in want and _has_proba(model):
            proba = self._proba(x)
        if "predict" not in want:
            labels = np.empty(0)
        elif proba is not None and self._labels_from_proba:
            labels = np.asarray(classes)[proba.argmax(axis=1)]
        else:
            labels = np.asarray(model.predict(x))
        if labels.dtype.kind in "iub":
            labels = labels.astype(np.int64)
        return select(classifier_outputs(labels, proba), outputs)

    def _proba(self, x: np.ndarray) -> np.ndarray:
        """predict_proba; for forests, the trees are called in a plain loop.

        scikit-learn runs each tree through joblib (a config context and a warnings filter per tree),
        which costs ~5 ms per call for 100 trees whatever the batch size. Summing the trees' answers in
        the same order gives bit-identical probabilities about five times faster.
        """
        forest = self._forest
        if forest is None:
            return np.asarray(self._model.predict_proba(x), dtype=np.float64)
        if self._before_forest is not None:
            x = self._before_forest.transform(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():  # let scikit-learn's own validation decide what NaN/inf mean
            return np.asarray(forest.predict_proba(x), dtype=np.float64)
        proba = np.zeros((len(x), forest.n_classes_), dtype=np.float64)
        for tree in forest.estimators_:
            proba += tree.predict_proba(x, check_input=False)
        proba /= len(forest.estimators_)
        return proba

    def unload(self) -> None:
        self._model = None
        self._forest = self._before_forest = None


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
