"""A reference profile of the training features, kept with a model version so that drift can later be
measured against the data the model was trained on. Plain JSON: every float is finite (or None)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from modelport.datasets.reading import column_type
from modelport.errors import InvalidInput

if TYPE_CHECKING:
    import numpy
    import pyarrow

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SAMPLE = 1000  # numeric values kept in a profile for two-sample tests


def profile(
    table: pyarrow.Table, columns: Sequence[str], *, bins: int = 10, top: int = 20, sample: int = SAMPLE
) -> dict[str, Any]:
    """``{"rows": n, "features": {name: {...}}}`` for the named columns.

    Integer and float columns are ``numeric``: count, nulls, mean, std (population), min, max, the
    QUANTILES (linear interpolation, as numpy's default) and a histogram of ``bins`` EQUAL-WIDTH bins over
    min..max (``bins`` holds the edges, ``counts`` one count per bin; the last bin includes max). Equal
    widths rather than quantile edges: the edges stay distinct on discrete data, and the quantiles are
    there already. NaN and infinite values cannot be placed, so they count as nulls. ``sample`` holds up
    to ``sample`` of the values, drawn uniformly without replacement with a fixed seed (all of them when
    there are no more), so that a two-sample test can later compare new data with these
    (monitoring.drift); profiles stored before it was added have no ``sample``.

    String and boolean columns are ``categorical``: count, nulls, the ``top`` most frequent values with
    their counts (booleans as "true"/"false"; ties broken by value) and ``other``, the count of the rest.
    """
    check_options(bins, top, sample)
    names = set(table.column_names)
    features: dict[str, Any] = {}
    for name in columns:
        if name not in names:
            raise InvalidInput(f"profile: the dataset has no column {name!r}", field="features")
        column = table.column(name)
        kind = column_type(column.type)
        if kind in ("integer", "float"):
            features[name] = _numeric(column, bins, sample)
        elif kind in ("string", "boolean"):
            features[name] = _categorical(column, top)
        else:
            raise InvalidInput(
                f"profile: column {name!r} has the unsupported type {column.type}", field="features"
            )
    return {"rows": table.num_rows, "features": features}


def check_options(bins: int, top: int, sample: int) -> None:
    if bins < 1 or top < 0 or sample < 0:
        raise InvalidInput("profile: bins must be at least 1, top and sample at least 0", field="features")


def _numeric(column: Any, bins: int, sample: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    values: numpy.ndarray[Any, Any] = pc.drop_null(column).cast(pa.float64()).to_numpy()
    return numeric_feature(values, len(column), bins=bins, sample=sample)


def numeric_feature(
    values: numpy.ndarray[Any, Any], length: int, *, bins: int = 10, sample: int = SAMPLE
) -> dict[str, Any]:
    """The ``numeric`` entry of a profile (see profile) for the non-null ``values`` of a column of
    ``length`` rows; NaN and infinite values are left out here and count as nulls. Shared with
    monitoring.drift, which profiles numpy columns of logged predictions."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    out: dict[str, Any] = {
        "kind": "numeric",
        "count": int(values.size),
        "nulls": length - int(values.size),
    }
    if values.size == 0:
        empty = dict.fromkeys(("mean", "std", "min", "max"))
        return {
            **out,
            **empty,
            "quantiles": {str(q): None for q in QUANTILES},
            "bins": [],
            "counts": [],
            "sample": [],
        }
    with np.errstate(over="ignore", invalid="ignore"):  # extreme values overflow to inf: reported as None
        low, high = float(values.min()), float(values.max())
        quantiles = np.quantile(values, QUANTILES)
        try:
            counts, edges = np.histogram(values, bins=bins, range=(low, high))
        except ValueError:  # a range too wide (or too narrow) for float64 edges: one bin
            counts, edges = np.array([values.size]), np.array([low, high])
        stats = {
            "mean": _finite(values.mean()),
            "std": _finite(values.std()),
            "min": low,
            "max": high,
        }
    if values.size > sample:
        drawn = np.random.default_rng(0).choice(values, size=sample, replace=False)
    else:
        drawn = values
    return {
        **out,
        **stats,
        "quantiles": {str(q): _finite(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "bins": [_finite(e) for e in edges],
        "counts": [int(c) for c in counts],
        "sample": [float(v) for v in drawn],
    }


def _categorical(column: Any, top: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    counted = pc.value_counts(pc.drop_null(column)).to_pylist()
    pairs = [(category(vc["values"]), int(vc["counts"])) for vc in counted]
    return categorical_feature(pairs, len(column) - column.null_count, column.null_count, top=top)


def categorical_feature(
    counted: Iterable[tuple[str, int]], count: int, nulls: int, *, top: int = 20
) -> dict[str, Any]:
    """The ``categorical`` entry of a profile (see profile) from the (value, count) pairs of a column's
    ``count`` non-null values (values already made keys by ``category``). Shared with monitoring.drift."""
    # most frequent first; equal counts by value, so the same data always gives the same profile
    ranked = sorted(counted, key=lambda vc: (-vc[1], vc[0]))
    values = dict(ranked[:top])
    return {
        "kind": "categorical",
        "count": count,
        "nulls": nulls,
        "values": values,
        "other": count - sum(values.values()),
    }


def category(value: Any) -> str:
    """A categorical value as the key of a profile: booleans as "true"/"false", bytes as UTF-8 text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
