"""Drift statistics (monitoring.drift) on data drawn from known distributions, with fixed seeds."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from modelport.datasets.profile import QUANTILES
from modelport.errors import InvalidInput
from modelport.monitoring.drift import (
    EPSILON,
    build_profile,
    centroid,
    centroid_drift,
    columns_of,
    drift_report,
    feature_drift,
    ks_pvalue,
    psi,
    psi_pvalue,
)

CATEGORIES = ["a", "b", "c", "d"]
SHARES = [0.4, 0.3, 0.2, 0.1]


def tabular(rng: np.random.Generator, n: int, *, mean: float = 0.0, sd: float = 1.0) -> dict[str, Any]:
    return {
        "x": rng.normal(mean, sd, n),
        "y": rng.exponential(2.0, n),
        "k": rng.integers(0, 50, n),
        "c": rng.choice(CATEGORIES, n, p=SHARES),
    }


def plain_json(value: Any) -> None:
    json.dumps(value, allow_nan=False)


def without_samples(profile: dict[str, Any]) -> dict[str, Any]:
    """A profile as stored before profiles kept a sample."""
    features = {
        name: {k: v for k, v in feature.items() if k != "sample"}
        for name, feature in profile["features"].items()
    }
    return {**profile, "features": features}


# ---------------------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("seed", range(8))
def test_same_distribution_does_not_alarm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = build_profile(tabular(rng, 2000))
    report = drift_report(reference, tabular(rng, 500))
    assert report["status"] == "ok" and report["drifted"] == [] and report["rows"] == 500
    for entry in report["features"]:
        assert entry["status"] == "ok" and not entry["drifted"]
        assert entry["psi"] < 0.1 and entry["reference_rows"] == 2000 and entry["rows"] == 500
    numeric = [e for e in report["features"] if e["kind"] == "numeric"]
    assert len(numeric) == 3 and all(e["ks_pvalue"] is not None for e in numeric)
    assert next(e for e in report["features"] if e["name"] == "c")["ks_pvalue"] is None
    plain_json(report)


@pytest.mark.parametrize(("mean", "sd"), [(0.5, 1.0), (0.0, 1.6)], ids=["mean-shift", "scale-change"])
def test_shifted_distribution_drifts(mean: float, sd: float) -> None:
    rng = np.random.default_rng(7)
    reference = build_profile({"x": rng.normal(0, 1, 2000), "z": rng.normal(0, 1, 2000)})
    current = {"x": rng.normal(mean, sd, 500), "z": rng.normal(0, 1, 500)}
    report = drift_report(reference, current)
    assert report["status"] == "drift" and report["drifted"] == ["x"]
    x = report["features"][0]
    assert x["name"] == "x" and x["status"] == "drift" and x["drifted"]
    assert x["psi"] > 0.2 and x["psi_pvalue"] < 0.01 and x["ks_pvalue"] < 1e-3
    # the KS p-value is scipy's, against the profile's sample
    direct = stats.ks_2samp(np.asarray(reference["features"]["x"]["sample"]), current["x"]).pvalue
    assert x["ks_pvalue"] == pytest.approx(direct, rel=1e-9)
    assert ks_pvalue(reference["features"]["x"], current["x"]) == x["ks_pvalue"]
    plain_json(report)


def test_small_windows_of_the_same_distribution_rarely_alarm() -> None:
    """PSI alone is noise on 30 rows (it passes 0.2 most times); the significance gate keeps it quiet."""
    alarms = psi_alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        reference = build_profile({"x": rng.normal(0, 1, 2000)})
        report = drift_report(reference, {"x": rng.normal(0, 1, 30)})
        alarms += report["status"] == "drift"
        psi_alarms += report["features"][0]["psi"] >= 0.2
    assert psi_alarms >= 20 and alarms <= 2


def test_psi_by_hand_numeric() -> None:
    feature = {"kind": "numeric", "count": 10, "bins": [0.0, 1.0, 2.0, 3.0], "counts": [4, 4, 2]}
    # below min -> first bin, an edge -> the bin it opens, max and above -> last bin; NaN left out
    values = np.array([-5.0, 0.5, 0.9, 0.0, 2.5, float("nan")])
    ref, cur = [0.4, 0.4, 0.2], [0.8, EPSILON, 0.2]
    expected = sum((c - r) * math.log(c / r) for r, c in zip(ref, cur, strict=True))
    assert psi(feature, values) == pytest.approx(expected)
    values = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 99.0, 0.2, 2.9, 1.2, 0.1])
    ref, cur = [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]
    expected = sum((c - r) * math.log(c / r) for r, c in zip(ref, cur, strict=True))
    assert psi(feature, values) == pytest.approx(expected)
    assert psi(feature, np.array([0.4, 1.4, 1.5, 0.1, 2.2] * 2)) == pytest.approx(0.0)
    assert psi(feature, np.array([], dtype=float)) is None
    assert psi({"kind": "numeric", "count": 0, "bins": [], "counts": []}, values) is None


def test_psi_by_hand_categorical() -> None:
    feature = {"kind": "categorical", "count": 10, "nulls": 0, "values": {"a": 6, "b": 3}, "other": 1}
    values = np.array(["a", "a", "b", "z", "y", None], dtype=object)  # new categories count as other
    ref, cur = [0.6, 0.3, 0.1], [0.4, 0.2, 0.4]
    expected = sum((c - r) * math.log(c / r) for r, c in zip(ref, cur, strict=True))
    assert psi(feature, values) == pytest.approx(expected)
    # a category that the reference never saw, with no "other" there: the epsilon keeps it finite
    feature = {**feature, "values": {"a": 5, "b": 5}, "other": 0}
    ref, cur = [0.5, 0.5, EPSILON], [0.25, 0.25, 0.5]
    expected = sum((c - r) * math.log(c / r) for r, c in zip(ref, cur, strict=True))
    assert psi(feature, np.array(["a", "b", "q", "r"])) == pytest.approx(expected)


def test_categorical_same_frequencies_and_a_new_dominant_category() -> None:
    rng = np.random.default_rng(3)
    reference = build_profile({"c": rng.choice(CATEGORIES, 2000, p=SHARES)})
    same = drift_report(reference, {"c": rng.choice(CATEGORIES, 400, p=SHARES)})
    assert same["status"] == "ok" and same["features"][0]["psi"] < 0.05
    shifted = rng.choice(["a", "b", "c", "d", "new"], 400, p=[0.1, 0.1, 0.1, 0.1, 0.6])
    report = drift_report(reference, {"c": shifted})
    entry = report["features"][0]
    assert report["status"] == "drift" and report["drifted"] == ["c"]
    assert entry["kind"] == "categorical" and entry["psi"] > 1 and entry["psi_pvalue"] < 0.01
    assert entry["ks_pvalue"] is None
    # booleans and bytes are categories too
    flags = build_profile({"f": rng.random(500) < 0.3})
    assert set(flags["features"]["f"]["values"]) == {"true", "false"}
    assert drift_report(flags, {"f": rng.random(300) < 0.3})["status"] == "ok"
    assert drift_report(flags, {"f": rng.random(300) < 0.9})["status"] == "drift"


@pytest.mark.parametrize("seed", range(5))
def test_profile_without_sample_still_gets_a_ks_pvalue(seed: int) -> None:
    rng = np.random.default_rng(20 + seed)
    reference = without_samples(build_profile({"x": rng.normal(0, 1, 2000), "y": rng.gamma(2.0, 1.0, 2000)}))
    assert "sample" not in reference["features"]["x"]
    same = drift_report(reference, {"x": rng.normal(0, 1, 500), "y": rng.gamma(2.0, 1.0, 500)})
    assert same["status"] == "ok"
    assert all(e["ks_pvalue"] > 0.01 for e in same["features"])
    shifted = drift_report(reference, {"x": rng.normal(0.5, 1, 500), "y": rng.gamma(2.0, 1.5, 500)})
    assert shifted["status"] == "drift" and shifted["drifted"] == ["x", "y"]
    assert all(e["ks_pvalue"] < 1e-6 for e in shifted["features"])


def test_ks_pvalue_edge_cases() -> None:
    rng = np.random.default_rng(5)
    binary = without_samples(build_profile({"b": rng.integers(0, 2, 1000)}))["features"]["b"]
    assert ks_pvalue(binary, rng.integers(0, 2, 100)) is None  # a discrete reference: no CDF to rebuild
    categorical = build_profile({"c": np.array(["a", "b"] * 50)})["features"]["c"]
    assert ks_pvalue(categorical, np.array(["a"] * 10)) is None
    numeric = build_profile({"x": rng.normal(0, 1, 100)})["features"]["x"]
    assert ks_pvalue(numeric, np.array([float("nan")])) is None
    assert ks_pvalue(numeric, np.array(["text"], dtype=object)) is None
    assert psi_pvalue(numeric, np.array([], dtype=float)) is None


# ---------------------------------------------------------------------------------------------- profiles


def test_build_profile_matches_the_dataset_profile() -> None:
    pa = pytest.importorskip("pyarrow")
    from modelport.datasets.profile import profile

    rng = np.random.default_rng(11)
    data = tabular(rng, 3000)
    data["f"] = rng.random(3000) < 0.25
    table = pa.table({k: pa.array(v) for k, v in data.items()})
    from_arrow = profile(table, list(data), bins=12, top=3)
    from_numpy = build_profile(data, bins=12, top=3)
    assert from_arrow == from_numpy
    x = from_numpy["features"]["x"]
    assert len(x["sample"]) == 1000 and len(set(x["sample"])) == 1000
    assert set(x["sample"]) <= set(data["x"].tolist())
    assert x["counts"] == np.histogram(data["x"], bins=12)[0].tolist()
    assert x["quantiles"] == {str(q): pytest.approx(np.quantile(data["x"], q)) for q in QUANTILES}
    assert list(from_numpy["features"]["c"]["values"]) == ["a", "b", "c"]  # top 3, most frequent first
    plain_json(from_numpy)


def test_build_profile_nulls_small_columns_and_embedding() -> None:
    values = np.array([1.0, np.nan, 3.0, np.inf, 5.0])
    words = np.array(["a", None, "b", b"a", float("nan")], dtype=object)
    result = build_profile({"v": values, "w": words, "when": np.array(["2024-01-01"], dtype="datetime64[D]")})
    v, w = result["features"]["v"], result["features"]["w"]
    assert result["rows"] == 5 and set(result["features"]) == {"v", "w"}  # dates are left out
    assert v["count"] == 3 and v["nulls"] == 2 and v["sample"] == [1.0, 3.0, 5.0]
    assert w == {"kind": "categorical", "count": 3, "nulls": 2, "values": {"a": 2, "b": 1}, "other": 0}
    drawn = build_profile({"v": values}, sample=2)["features"]["v"]["sample"]
    assert len(drawn) == 2 and set(drawn) < {1.0, 3.0, 5.0}
    vectors = np.array([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    with_embedding = build_profile({}, embedding=vectors)
    assert with_embedding["embedding"] == {"centroid": [0.3, 0.9], "rows": 2, "dim": 2}
    assert with_embedding["rows"] == 2
    with pytest.raises(InvalidInput):
        build_profile({"m": np.zeros((3, 2))})
    with pytest.raises(InvalidInput):
        build_profile({"v": values}, bins=0)
    plain_json(result)


def test_columns_of_naming_rules() -> None:
    n = 4
    tensors = {
        "age": np.arange(n),
        "text": np.array([b"hi", b"there", "you", b"\xff"], dtype=object),
        "image": np.zeros((n, 2, 2)),
    }
    columns = columns_of({**tensors, "x": np.ones((n, 3))}, ["f0", "f1", "f2"])
    assert list(columns) == ["age", "text", "f0", "f1", "f2"]  # one 2-D tensor: the feature names
    assert columns["text"].tolist() == ["hi", "there", "you", "\ufffd"]
    columns = columns_of({"x": np.ones((n, 3))}, ["f0", "f1"])  # names that do not fit: indexed
    assert list(columns) == ["x[0]", "x[1]", "x[2]"]
    columns = columns_of({"a": np.ones((n, 2)), "b": np.zeros((n, 2))}, ["f0", "f1"])
    assert list(columns) == ["a[0]", "a[1]", "b[0]", "b[1]"]  # two 2-D tensors: always indexed
    assert columns_of({"x": np.ones((n, 2))}) == {
        "x[0]": pytest.approx(np.ones(n)),
        "x[1]": pytest.approx(np.ones(n)),
    }
    assert columns_of({"s": np.array(7.0), "t": np.zeros((n, 3, 4))}) == {}
    profiled = build_profile(columns_of(tensors))
    assert profiled["features"]["text"]["kind"] == "categorical"
    assert profiled["features"]["age"]["kind"] == "numeric"


def test_insufficient_missing_and_no_reference() -> None:
    rng = np.random.default_rng(9)
    reference = build_profile({"x": rng.normal(0, 1, 500), "c": rng.choice(CATEGORIES, 500)})
    few = drift_report(reference, {"x": rng.normal(5, 1, 20), "c": rng.choice(CATEGORIES, 20)})
    assert few["status"] == "insufficient_data" and few["drifted"] == [] and few["rows"] == 20
    assert [e["status"] for e in few["features"]] == ["insufficient_data"] * 2
    assert all(e["psi"] is None and not e["drifted"] for e in few["features"])

    report = drift_report(reference, {"x": rng.normal(0, 1, 200), "extra": rng.normal(0, 1, 200)})
    assert report["status"] == "ok" and [e["name"] for e in report["features"]] == ["x", "c"]
    c = report["features"][1]
    assert c["status"] == "missing" and c["psi"] is None and c["rows"] == 0 and not c["drifted"]

    mostly_null = np.full(200, np.nan)
    mostly_null[:10] = 0.0
    entry = feature_drift("x", reference["features"]["x"], mostly_null)
    assert entry["status"] == "insufficient_data" and entry["rows"] == 10

    assert drift_report(None, {"x": rng.normal(0, 1, 100)})["status"] == "no_reference"
    assert drift_report({"rows": 0, "features": {}}, {"x": rng.normal(0, 1, 100)})["status"] == "no_reference"
    empty = build_profile({"x": np.array([np.nan] * 40)})
    assert drift_report(empty, {"x": rng.normal(0, 1, 100)})["features"][0]["status"] == "no_reference"
    plain_json([few, report])


# ---------------------------------------------------------------------------------------------- embeddings


def around(rng: np.random.Generator, direction: np.ndarray, n: int) -> np.ndarray:
    return direction + rng.normal(0, 0.25, (n, direction.size))


def test_embedding_centroid_drift() -> None:
    rng = np.random.default_rng(4)
    d = 32
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    w = rng.normal(size=d)
    w -= w.dot(u) * u
    w /= np.linalg.norm(w)
    rotated = math.cos(0.6) * u + math.sin(0.6) * w  # about 34 degrees away

    reference = build_profile({}, embedding=around(rng, u, 1000))
    assert reference["embedding"]["rows"] == 1000 and reference["embedding"]["dim"] == d
    ref_centroid = reference["embedding"]["centroid"]
    assert ref_centroid == pytest.approx(centroid(around(np.random.default_rng(4), u, 1000)), abs=0.05)

    same = centroid_drift(ref_centroid, around(rng, u, 300))
    assert same["rows"] == 300 and same["cosine_distance"] < 0.01 and not same["drifted"]
    moved = centroid_drift(ref_centroid, around(rng, rotated, 300))
    assert moved["cosine_distance"] > 0.1 and moved["drifted"]

    report = drift_report(reference, {}, embedding=around(rng, rotated, 300))
    assert report["status"] == "drift" and report["embedding"]["drifted"] and report["rows"] == 300
    assert drift_report(reference, {}, embedding=around(rng, u, 300))["status"] == "ok"
    plain_json([same, moved, report])


def test_centroid_edge_cases() -> None:
    assert centroid(np.zeros((3, 4))) == []
    assert centroid(np.array([[np.nan, 1.0], [0.0, 2.0]])) == [0.0, 1.0]
    assert centroid_drift([], np.ones((5, 2))) == {"rows": 5, "cosine_distance": None, "drifted": False}
    assert centroid_drift([1.0, 0.0, 0.0], np.ones((5, 2)))["cosine_distance"] is None
    assert centroid_drift([1.0, 0.0], np.zeros((5, 2)))["rows"] == 0
    assert centroid_drift([1.0, 0.0], np.array([[-1.0, 0.0]]))["cosine_distance"] == pytest.approx(2.0)
    with pytest.raises(InvalidInput):
        centroid(np.ones(3))
