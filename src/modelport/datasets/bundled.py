"""scikit-learn's bundled datasets, used by name (``sklearn:iris``) without an upload. They ship with
scikit-learn: nothing is downloaded."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from modelport.datasets.reading import DatasetInfo, describe
from modelport.errors import NotFound

if TYPE_CHECKING:
    import pyarrow

PREFIX = "sklearn:"
TARGET = "target"
BUNDLED: dict[str, str] = {
    "iris": "Iris flowers: 150 rows, 4 measurements, 3 species (classification)",
    "wine": "Wine cultivars: 178 rows, 13 chemical measurements, 3 classes (classification)",
    "breast_cancer": "Breast cancer Wisconsin: 569 rows, 30 features, malignant or benign (classification)",
    "digits": "Handwritten digits: 1797 rows, 8x8 images as 64 pixel columns, 10 classes (classification)",
    "diabetes": "Diabetes progression: 442 rows, 10 features, a disease measure a year on (regression)",
}
_REGRESSION = frozenset({"diabetes"})


def is_bundled(ref: str) -> bool:
    return ref.startswith(PREFIX)


def bundled_table(name: str) -> pyarrow.Table:
    """The features under scikit-learn's own names, then a ``target`` column: the class index (int64),
    or the measure (float64) for regression."""
    if name not in BUNDLED:
        known = ", ".join(PREFIX + n for n in BUNDLED)
        raise NotFound(f"no bundled dataset {PREFIX}{name}; the known ones are {known}", field="dataset")
    return _load(name)


def bundled_info(name: str) -> DatasetInfo:
    if name not in BUNDLED:
        bundled_table(name)  # its NotFound
    return _info(name)


@functools.cache  # listing datasets shows their row counts: describe each once per process
def _info(name: str) -> DatasetInfo:
    return describe(bundled_table(name), "sklearn")


@functools.cache  # small and immutable: load each once per process
def _load(name: str) -> Any:
    import numpy as np
    import pyarrow as pa
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=False)
    names = [str(n) for n in bunch.feature_names]
    columns = [pa.array(np.ascontiguousarray(bunch.data[:, i])) for i in range(len(names))]
    target_type = np.float64 if name in _REGRESSION else np.int64
    columns.append(pa.array(np.asarray(bunch.target, dtype=target_type)))
    return pa.table(columns, names=[*names, TARGET])
