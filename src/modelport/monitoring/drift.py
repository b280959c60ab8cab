"""Drift statistics: how far the inputs (or outputs) a version sees now are from its reference profile.

A reference profile has the format of datasets.profile (``{"rows", "features": {name: numeric |
categorical}}``, optionally ``"embedding": {"centroid", "rows", "dim"}``); it comes from the training job,
from a reference dataset, or from ``build_profile`` over a version's first logged predictions. The current
data is a batch of rows as numpy columns (``columns_of`` turns V2 tensors into them).

Per feature: the population stability index (PSI) over the reference's bins (numeric) or values
(categorical), and for numeric features the Kolmogorov-Smirnov p-value (scipy) against the reference's
sample, or, for profiles stored before they kept one, against a CDF rebuilt from the quantiles and the
histogram. PSI is noisy on small windows, so its verdict is gated by psi_pvalue, a bootstrap test of
the PSI itself (drift_report gives the rule). For embeddings: the cosine distance between the reference
centroid and the current one.

Pure functions, no web framework; everything returned is plain JSON (finite floats or None).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from modelport.datasets.profile import (
    QUANTILES,
    SAMPLE,
    categorical_feature,
    category,
    check_options,
    numeric_feature,
)
from modelport.errors import InvalidInput

EPSILON = 1e-4  # the share given to an empty bin, so that PSI stays finite
PSI_THRESHOLD = 0.2  # the customary "significant shift" level of PSI
KS_ALPHA = 0.01
MIN_ROWS = 30
CENTROID_THRESHOLD = 0.05
DRAWS = 1000  # bootstrap draws of psi_pvalue

Array = np.ndarray[Any, Any]


# ---------------------------------------------------------------------------------------------- columns


def columns_of(tensors: Mapping[str, Array], feature_names: Sequence[str] | None = None) -> dict[str, Array]:
    """One 1-D column per feature from the V2 tensors (inputs or outputs) of a batch of n rows.

    A tensor of shape [n] is one column named after the tensor. A tensor of shape [n, k] is k columns
    ``name[0]`` .. ``name[k-1]``; when it is the only 2-D tensor and ``feature_names`` has k names, the
    columns take those names instead (a tabular model's single input). BYTES tensors (str or bytes
    elements) become string columns, decoded as UTF-8; they are profiled as categorical. Scalars and
    tensors of rank above 2 (images, sequences of vectors) are left out. An embedding output ([n, d])
    is better left out of ``tensors`` and profiled whole (build_profile's ``embedding``, centroid_drift)
    than as d columns.
    """
    two_d = [name for name, t in tensors.items() if np.ndim(t) == 2]
    columns: dict[str, Array] = {}
    for name, tensor in tensors.items():
        array = np.asarray(tensor)
        if array.ndim == 1:
            columns[name] = _column(array)
        elif array.ndim == 2:
            k = array.shape[1]
            if feature_names is not None and len(two_d) == 1 and len(feature_names) == k:
                names = [str(f) for f in feature_names]
            else:
                names = [f"{name}[{i}]" for i in range(k)]
            for i, column in enumerate(names):
                columns[column] = _column(array[:, i])
    return columns


def _column(array: Array) -> Array:
    if array.dtype.kind == "S" or (array.dtype == object and _holds_bytes(array)):
        out = np.empty(array.shape[0], dtype=object)
        out[:] = [_text(v) for v in array.tolist()]
        return out
    return array


def _holds_bytes(array: Array) -> bool:
    return any(isinstance(v, bytes) for v in array.tolist())


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------------------------- profiles


def build_profile(
    columns: Mapping[str, Array],
    *,
    bins: int = 10,
    top: int = 20,
    sample: int = SAMPLE,
    embedding: Array | None = None,
) -> dict[str, Any]:
    """A reference profile of numpy columns, in the format of datasets.profile.profile.

    For a version's first N logged predictions (inputs, or outputs for prediction drift). Columns of
    bool, str, bytes or object dtype are categorical; integer and float columns numeric; other dtypes
    (dates, complex) are left out. ``embedding``, a 2-D float array of n vectors (an embedding model's
    output, or a text model's embeddings), adds ``"embedding": {"centroid", "rows", "dim"}``.
    """
    check_options(bins, top, sample)
    features: dict[str, Any] = {}
    rows = 0
    for name, values in columns.items():
        array = np.asarray(values)
        if array.ndim != 1:
            raise InvalidInput(f"profile: column {name!r} must be 1-D, got shape {list(array.shape)}")
        rows = max(rows, array.shape[0])
        kind = _kind(array)
        if kind == "numeric":
            features[name] = numeric_feature(array, array.shape[0], bins=bins, sample=sample)
        elif kind == "categorical":
            keys = _categories(array)
            features[name] = categorical_feature(
                Counter(keys).items(), len(keys), array.shape[0] - len(keys), top=top
            )
    out: dict[str, Any] = {"rows": rows, "features": features}
    if embedding is not None:
        vectors = _vectors(embedding)
        out["rows"] = max(rows, vectors.shape[0])
        out["embedding"] = {"centroid": centroid(vectors), "rows": vectors.shape[0], "dim": vectors.shape[1]}
    return out


def _kind(array: Array) -> str | None:
    kind = array.dtype.kind
    if kind in "biuf":
        return "categorical" if kind == "b" else "numeric"
    if kind in "OSU":
        return "categorical"
    return None


def _categories(values: Array) -> list[str]:
    """The non-null values of a column as profile keys (None and NaN are nulls)."""
    keys = []
    for value in np.asarray(values).ravel().tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        keys.append(category(value))
    return keys


def _numbers(values: Array) -> Array | None:
    """The finite values of a column as float64 (None for a column that is not numbers)."""
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return array[np.isfinite(array)]


# ---------------------------------------------------------------------------------------------- statistics


def psi(reference_feature: Mapping[str, Any], values: Array) -> float | None:
    """The population stability index of ``values`` against a profile's feature:
    ``sum((cur - ref) * ln(cur / ref))`` over the shares of the rows in each bucket.

    Numeric: the buckets are the reference's bins; values below its min fall in the first bin, above its
    max in the last; NaN and infinite values are left out. Categorical: the reference's values and an
    "other" bucket, where values the reference did not list go. An empty bucket (on either side) counts
    as a share of EPSILON, so the index is finite. None when either side has no values (or the feature
    kind is unknown, or values of a numeric feature are not numbers).
    """
    buckets = _buckets(reference_feature, values)
    if buckets is None:
        return None
    return _finite(_psi(*buckets))


def psi_pvalue(reference_feature: Mapping[str, Any], values: Array, *, draws: int = DRAWS) -> float | None:
    """How likely a PSI at least this large is between two samples of one distribution, of the sizes of
    the reference and of ``values``: a parametric bootstrap of the homogeneity test with PSI as its
    statistic. Both sides are redrawn ``draws`` times (fixed seed) from the pooled bucket shares and the
    p-value is ``(1 + #{PSI* >= PSI}) / (draws + 1)``. Unlike a chi-square test it stays valid with
    sparse buckets (a histogram's tails, a new category) and few rows, which is where PSI alone is noise:
    with 10 bins, 30 rows of the very distribution of the reference give a PSI above 0.2 most times.
    None when psi is None.
    """
    buckets = _buckets(reference_feature, values)
    if buckets is None:
        return None
    reference, current = buckets
    observed = _psi(reference, current)
    pooled = (reference + current) / (reference.sum() + current.sum())
    rng = np.random.default_rng(0)
    ref = rng.multinomial(int(reference.sum()), pooled / pooled.sum(), size=draws)
    cur = rng.multinomial(int(current.sum()), pooled / pooled.sum(), size=draws)
    extreme = int(np.sum(_psi(ref.astype(np.float64), cur.astype(np.float64)) >= observed * (1 - 1e-9)))
    return (1 + extreme) / (draws + 1)


def _buckets(reference_feature: Mapping[str, Any], values: Array) -> tuple[Array, Array] | None:
    """The reference's and the current counts per PSI bucket (see psi); None when either is empty."""
    kind = reference_feature.get("kind")
    if kind == "numeric":
        edges = reference_feature.get("bins") or []
        ref_counts = reference_feature.get("counts") or []
        numbers = _numbers(values)
        if numbers is None or not numbers.size or len(edges) != len(ref_counts) + 1 or len(edges) < 2:
            return None
        if any(e is None for e in edges):
            return None
        index = np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), numbers, side="right")
        current = np.bincount(index, minlength=len(ref_counts)).astype(np.float64)
        reference = np.asarray(ref_counts, dtype=np.float64)
    elif kind == "categorical":
        known: dict[str, int] = dict(reference_feature.get("values") or {})
        counted = Counter(_categories(values))
        total = sum(counted.values())
        listed = [counted.get(k, 0) for k in known]
        current = np.asarray([*listed, total - sum(listed)], dtype=np.float64)
        reference = np.asarray([*known.values(), reference_feature.get("other") or 0], dtype=np.float64)
    else:
        return None
    if reference.sum() <= 0 or current.sum() <= 0:
        return None
    return reference, current


def _psi(reference: Array, current: Array) -> Any:
    """PSI between counts over the last axis (one float, or one per row of stacked counts)."""
    ref = reference / reference.sum(axis=-1, keepdims=True)
    cur = current / current.sum(axis=-1, keepdims=True)
    ref = np.where(ref > 0, ref, EPSILON)
    cur = np.where(cur > 0, cur, EPSILON)
    return np.sum((cur - ref) * np.log(cur / ref), axis=-1)


def ks_pvalue(reference_feature: Mapping[str, Any], values: Array) -> float | None:
    """The two-sided Kolmogorov-Smirnov p-value of ``values`` against a numeric feature's distribution.

    With the profile's ``sample``: scipy.stats.ks_2samp of the values against it. For a profile stored
    without one: the distance of scipy.stats.kstest against a piecewise-linear CDF through (min, 0), the
    quantiles, the histogram's edges at their cumulative shares and (max, 1), judged by the KS
    distribution (scipy.stats.kstwo) of the effective size ``n*m/(n+m)`` of the two samples -- an
    approximation that is good for continuous data; it is left out (None) when the reference looks
    discrete (quantiles that repeat), where interpolating between steps would overstate the distance.
    None for categorical features and when either side has no values.
    """
    if reference_feature.get("kind") != "numeric":
        return None
    numbers = _numbers(values)
    if numbers is None or not numbers.size:
        return None
    from scipy import stats

    sample = reference_feature.get("sample")
    if sample is not None:
        if not sample:
            return None
        return _finite(stats.ks_2samp(np.asarray(sample, dtype=np.float64), numbers).pvalue)
    cdf = _reference_cdf(reference_feature)
    if cdf is None:
        return None
    xs, ps = cdf
    distance = stats.kstest(numbers, lambda x: np.interp(x, xs, ps, left=0.0, right=1.0)).statistic
    # the reference CDF is itself estimated from its rows: judge the distance as a two-sample one would,
    # by the effective size n*m/(n+m) (else large windows would find the reference's own noise)
    m = int(reference_feature.get("count") or 0)
    size = max(1, round(numbers.size * m / (numbers.size + m))) if m else numbers.size
    return _finite(stats.kstwo.sf(distance, size))


def _reference_cdf(feature: Mapping[str, Any]) -> tuple[Array, Array] | None:
    low, high = feature.get("min"), feature.get("max")
    quantiles = feature.get("quantiles") or {}
    levels = [q for q in QUANTILES if quantiles.get(str(q)) is not None]
    if low is None or high is None or not high > low:
        return None
    xs = [low, *(quantiles[str(q)] for q in levels), high]
    if any(b <= a for a, b in pairwise(xs)):
        return None  # repeated quantiles: a discrete distribution
    ps = [0.0, *levels, 1.0]
    edges, counts = feature.get("bins") or [], feature.get("counts") or []
    total = sum(counts)
    if total > 0 and len(edges) == len(counts) + 1 and all(e is not None for e in edges):
        cumulative = np.concatenate([[0.0], np.cumsum(counts) / total])
        xs += edges[1:-1]
        ps += cumulative[1:-1].tolist()
    order = np.argsort(xs, kind="stable")
    x = np.asarray(xs, dtype=np.float64)[order]
    p = np.maximum.accumulate(np.asarray(ps, dtype=np.float64)[order])  # the two estimates, made monotone
    return x, p


# ---------------------------------------------------------------------------------------------- verdicts


def feature_drift(
    name: str,
    reference_feature: Mapping[str, Any],
    values: Array | None,
    *,
    psi_threshold: float = PSI_THRESHOLD,
    ks_alpha: float = KS_ALPHA,
    min_rows: int = MIN_ROWS,
) -> dict[str, Any]:
    """The drift of one feature: ``{"name", "kind", "status", "psi", "psi_pvalue", "ks_pvalue",
    "drifted", "reference_rows", "rows"}``; see drift_report for the rule. ``values`` None: the feature is
    missing.

    ``status``: "drift" or "ok" (a verdict), "missing" (no such current column), "insufficient_data"
    (fewer than ``min_rows`` usable current values), "no_reference" (the reference has no values, or
    nothing to compare them by).
    """
    kind = reference_feature.get("kind")
    out: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "status": "missing",
        "psi": None,
        "psi_pvalue": None,
        "ks_pvalue": None,
        "drifted": False,
        "reference_rows": int(reference_feature.get("count") or 0),
        "rows": 0,
    }
    if values is None:
        return out
    if kind == "numeric":
        numbers = _numbers(values)
        usable = 0 if numbers is None else int(numbers.size)
    else:
        usable = len(_categories(values))
    out["rows"] = usable
    if not out["reference_rows"]:
        return {**out, "status": "no_reference"}
    if usable < max(min_rows, 1):
        return {**out, "status": "insufficient_data"}
    index = psi(reference_feature, values)
    if index is None:
        return {**out, "status": "no_reference"}
    significance = psi_pvalue(reference_feature, values)
    pvalue = ks_pvalue(reference_feature, values)
    drifted = (index >= psi_threshold and significance is not None and significance < ks_alpha) or (
        pvalue is not None and pvalue < ks_alpha and index >= psi_threshold / 2
    )
    return {
        **out,
        "status": "drift" if drifted else "ok",
        "psi": index,
        "psi_pvalue": significance,
        "ks_pvalue": pvalue,
        "drifted": drifted,
    }


def drift_report(
    reference: Mapping[str, Any] | None,
    current: Mapping[str, Array],
    *,
    embedding: Array | None = None,
    psi_threshold: float = PSI_THRESHOLD,
    ks_alpha: float = KS_ALPHA,
    min_rows: int = MIN_ROWS,
    centroid_threshold: float = CENTROID_THRESHOLD,
) -> dict[str, Any]:
    """How far a batch of current rows (numpy columns, see columns_of) is from a reference profile:
    ``{"rows", "status", "features": [feature_drift entries], "drifted": [names], "embedding"}``.

    The rule, per feature. It has drifted when

    - its PSI is at least ``psi_threshold`` (0.2, the customary level of a significant shift) AND that
      PSI is unlikely between two samples of one distribution: psi_pvalue below ``ks_alpha``; or
    - (numeric features) the KS p-value is below ``ks_alpha`` AND the PSI is at least half of
      ``psi_threshold``.

    PSI carries the verdict because it measures the size of a shift, which a p-value does not (with many
    rows any tiny shift is "significant"); the tests only keep sampling noise from passing for a shift.
    That matters on small windows: with 10 bins, PSI between samples of one distribution is about
    ``(bins - 1) * (1/n_reference + 1/n_current)`` and more with empty bins -- 30 current rows against
    2000 pass 0.2 nine times in ten, 100 rows one time in ten, 500 rows never. With the tests, the same
    distribution alarms about one or two times in a hundred at any window size (both tests at 0.01);
    past a few hundred rows the PSI threshold alone decides, so the rule is PSI's there.

    ``status``: "no_reference" (no reference profile, or one with neither features nor an embedding),
    "insufficient_data" (fewer than ``min_rows`` current rows: features listed, no verdicts), "drift"
    (a feature or the embedding drifted), else "ok". Reference features that the current rows lack are
    listed with the status "missing" and do not change the verdict; current columns the reference does
    not know are ignored. ``embedding``: the current n vectors, compared by centroid_drift with the
    reference's ``embedding`` centroid (the report's ``embedding`` is None when either is absent).
    """
    rows = max((np.shape(v)[0] for v in current.values() if np.ndim(v) >= 1), default=0)
    if embedding is not None:
        rows = max(rows, int(np.shape(embedding)[0]) if np.ndim(embedding) >= 1 else 0)
    features: Mapping[str, Any] = (reference or {}).get("features") or {}
    reference_embedding = (reference or {}).get("embedding") or None
    out: dict[str, Any] = {"rows": rows, "status": "ok", "features": [], "drifted": [], "embedding": None}
    if not features and not reference_embedding:
        return {**out, "status": "no_reference"}
    if rows < min_rows:
        entries = []
        for name, feature in features.items():
            entry = feature_drift(name, feature, None)
            if name in current:
                entry = {**entry, "status": "insufficient_data", "rows": int(np.shape(current[name])[0])}
            entries.append(entry)
        return {**out, "status": "insufficient_data", "features": entries}
    entries = [
        feature_drift(
            name,
            feature,
            current.get(name),
            psi_threshold=psi_threshold,
            ks_alpha=ks_alpha,
            min_rows=min_rows,
        )
        for name, feature in features.items()
    ]
    drifted = [e["name"] for e in entries if e["drifted"]]
    result: dict[str, Any] | None = None
    if reference_embedding and embedding is not None:
        result = centroid_drift(
            reference_embedding.get("centroid") or [], embedding, threshold=centroid_threshold
        )
    status = "drift" if drifted or (result is not None and result["drifted"]) else "ok"
    return {**out, "status": status, "features": entries, "drifted": drifted, "embedding": result}


# ---------------------------------------------------------------------------------------------- embeddings


def centroid(vectors: Array) -> list[float]:
    """The mean of the L2-normalised rows of ``vectors`` ([n, d]); rows of norm 0 or with NaN or
    infinite elements are left out. Empty when no row is left."""
    array = _vectors(vectors)
    if not array.shape[0]:
        return []
    return [float(v) for v in array.mean(axis=0)]


def _vectors(vectors: Array) -> Array:
    """The usable rows of an [n, d] array of vectors, L2-normalised."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise InvalidInput(f"embeddings must be 2-D ([n, d]), got shape {list(array.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(array, axis=1)
        keep = np.isfinite(array).all(axis=1) & np.isfinite(norms) & (norms > 0)
        normalised: Array = array[keep] / norms[keep, None]
    return normalised


def centroid_drift(
    reference_centroid: Sequence[float], vectors: Array, *, threshold: float = CENTROID_THRESHOLD
) -> dict[str, Any]:
    """``{"rows", "cosine_distance", "drifted"}``: the cosine distance (1 - cosine similarity) between the
    reference centroid and the centroid of ``vectors``; drifted when it is at least ``threshold``. The
    distance is None (and drifted False) when either centroid is empty or zero or their sizes differ."""
    current = _vectors(vectors)
    out: dict[str, Any] = {"rows": int(current.shape[0]), "cosine_distance": None, "drifted": False}
    reference = np.asarray(reference_centroid, dtype=np.float64)
    if not current.shape[0] or reference.ndim != 1 or reference.shape[0] != current.shape[1]:
        return out
    mean = current.mean(axis=0)
    norms = float(np.linalg.norm(reference)) * float(np.linalg.norm(mean))
    if not math.isfinite(norms) or norms <= 0:
        return out
    distance = _finite(1.0 - float(np.dot(reference, mean)) / norms)
    if distance is None:
        return out
    distance = max(distance, 0.0)
    return {**out, "cosine_distance": distance, "drifted": distance >= threshold}


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
