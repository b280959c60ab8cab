"""Monitoring of speed and quality: the one object the API, the dashboard and the CLI ask.

It owns the two data-plane observers of this process (``ServingStats`` and the ``PredictionLog``) and a
background thread (``start``) that, once a second, follows each model's sample rate, writes closed
statistics buckets to the registry and sends due webhooks; every ``alert_interval`` it evaluates the
alert rules; now and then it makes reference profiles from first predictions and drops old data.
With ``--workers N`` or several hosts every process runs the same loop: statistics are per process and
added up when read, alert transitions are compare-and-set and webhook attempts are claimed, so each
happens once.

``report(model, window)`` is the whole picture for a window: per version traffic, errors, latency
quantiles and a time series, live quality from feedback, drift against the version's reference, and
the model's alert rules.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, ModelportError
from modelport.monitoring import drift, quality
from modelport.monitoring.alerting import Alerting, iso
from modelport.monitoring.predlog import PredictionLog
from modelport.monitoring.windows import ServingStats, process_origin, series, summarise
from modelport.registry import Registry, VersionRecord, VersionState
from modelport.registry.alerts import AlertRule

if TYPE_CHECKING:
    from modelport.datasets.service import DatasetService

log = logging.getLogger("modelport.monitoring")
MAX_WINDOW = 7 * 86400
MAX_POINTS = 60  # points of a report's time series
DRIFT_ROWS = 20_000  # the newest logged rows a window's drift is measured on
PROFILE_EVERY = 10.0  # seconds between looks for versions that need a profile from first predictions
PURGE_EVERY = 300.0

Resolver = Callable[[str, str | None], VersionRecord]


class MonitoringService:
    def __init__(
        self,
        registry: Registry,
        predictions: PredictionLog,
        stats: ServingStats,
        resolve: Resolver,
        datasets: DatasetService,
        *,
        retention: float,
        alert_interval: float,
        webhook_timeout: float,
        webhook_attempts: int,
    ) -> None:
        self.registry = registry
        self.predictions = predictions
        self.stats = stats
        self.resolve = resolve  # the version a reference (alias, number, None) reaches now
        self.datasets = datasets
        self.retention = retention
        self.alert_interval = alert_interval
        self.origin = process_origin()
        self.alerting = Alerting(registry, resolve, self.measure, webhook_timeout, webhook_attempts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, float] = {}

    # ---- the background loop -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.predictions.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="modelport-monitoring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush(final=True)
        except Exception:
            log.exception("could not write the last serving statistics")
        self.predictions.close()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.tick()
            except Exception:  # a registry hiccup must not end monitoring
                log.exception("monitoring tick failed")

    def tick(self, now: float | None = None) -> None:
        """One round of the loop's chores (the tests call it directly)."""
        now = time.time() if now is None else now
        self.follow_rates()
        self.flush(now=now)
        self.alerting.deliver()
        if self._due("alerts", self.alert_interval, now):
            self.alerting.evaluate()
        if self._due("profiles", PROFILE_EVERY, now):
            self.make_profiles()
        if self._due("purge", PURGE_EVERY, now):
            self.purge(now)

    def _due(self, chore: str, every: float, now: float) -> bool:
        if now - self._last.get(chore, -math.inf) < every:
            return False
        self._last[chore] = now
        return True

    def follow_rates(self) -> None:
        self.predictions.set_rates(
            {name: c.sample_rate for name, c in self.registry.monitoring.configs().items()}
        )

    def flush(self, *, now: float | None = None, final: bool = False) -> None:
        """Write this process's closed statistics buckets (every bucket when ``final``)."""
        self.registry.monitoring.add_stats(self.origin, self.stats.drain(None if final else now))

    def purge(self, now: float) -> None:
        self.registry.monitoring.purge_stats(int(now - self.retention))
        self.registry.monitoring.purge_feedback(datetime.fromtimestamp(now - self.retention, UTC))
        self.predictions.enforce_retention()

    # ---- settings ------------------------------------------------------------------------------
    def config(self, model: str) -> dict[str, Any]:
        config = self.registry.monitoring.config(model)
        return {
            "sample_rate": config.sample_rate,
            "reference_rows": config.reference_rows,
            "updated_at": None if config.updated_at is None else config.updated_at.isoformat(),
            "updated_by": config.updated_by,
        }

    def configure(self, model: str, *, sample_rate: float, reference_rows: int, by: str) -> dict[str, Any]:
        self.registry.monitoring.set_config(
            model, sample_rate=sample_rate, reference_rows=reference_rows, by=by
        )
        self.registry.audit.record(
            actor=by,
            action="monitoring.configure",
            target=model,
            details={"sample_rate": sample_rate, "reference_rows": reference_rows},
        )
        self.follow_rates()  # this process at once; the others within a second
        return self.config(model)

    # ---- feedback ------------------------------------------------------------------------------
    def add_feedback(self, model: str, items: Sequence[Mapping[str, Any]], *, by: str) -> dict[str, Any]:
        """``[{request_id, label | value}]``: outcomes of answered requests, joined with the prediction
        log when quality is reported. Answers how many were stored and how many of them are already
        in the log (the others may be joined later, once their segment is written)."""
        rows: list[tuple[str, str | None, float | None]] = []
        for item in items:
            label, value = item.get("label"), item.get("value")
            rows.append((item["request_id"], None if label is None else str(label), value))
        stored = self.registry.monitoring.add_feedback(model, rows)
        self.predictions.flush()
        found = self.predictions.find(model, [r[0] for r in rows])
        return {
            "accepted": stored,
            "matched": len(found),
            "unmatched": [r[0] for r in rows if r[0] not in found],
        }

    # ---- reference profiles --------------------------------------------------------------------
    def reference(self, record: VersionRecord) -> tuple[str, dict[str, Any]] | None:
        """The version's reference profile: a stored one (a dataset, first predictions), else the one
        its training job made."""
        stored = self.registry.monitoring.profile(record.model, record.version)
        if stored is not None:
            return stored
        trained = (record.metadata or {}).get("profile")
        return ("training", trained) if trained else None

    def check_reference(self, dataset: str, target: str | None) -> None:
        """Refuse a reference dataset that does not exist or lacks ``target`` (before a push stores)."""
        resolved = self.datasets.resolve(dataset, field="reference_dataset")
        columns = [c["name"] for c in resolved.info.get("schema", [])]
        if target is not None and target not in columns:
            raise InvalidInput(f"dataset {dataset!r} has no column {target!r}", field="reference_target")

    def forget(self, model: str) -> None:
        """A deleted model's prediction log (its statistics, feedback and rules went with its rows)."""
        self.predictions.delete_model(model)

    def reference_from_dataset(
        self,
        model: str,
        version: int,
        dataset: str,
        *,
        features: Sequence[str] | None,
        target: str | None,
        by: str,
    ) -> dict[str, Any]:
        """Profile a dataset version as the version's reference: ``features`` (by default the version's
        training features, else every column but ``target``) and ``target`` as the prediction's reference."""
        from modelport.datasets.profile import profile

        record = self.registry.models.get_version(model, version)
        resolved = self.datasets.resolve(dataset)
        table = self.datasets.table(resolved)
        lineage = (record.metadata or {}).get("lineage") or {}
        names = list(features or lineage.get("features") or [c for c in table.column_names if c != target])
        if target is not None and target not in table.column_names:
            raise InvalidInput(f"the dataset has no column {target!r}", field="target")
        result = profile(table, names)
        if target is not None:
            output = _prediction_output_name(record)
            result["outputs"] = {
                "rows": table.num_rows,
                "features": {output: profile(table, [target])["features"][target]},
            }
        source = f"dataset:{resolved.ref}"
        self.registry.monitoring.set_profile(model, version, source, result)
        self.registry.audit.record(
            actor=by, action="monitoring.reference", target=f"{model}/{version}", details={"source": source}
        )
        return {"source": source, "rows": result["rows"], "features": names}

    def make_profiles(self) -> None:
        """Versions of models with ``reference_rows`` set and no stored profile get one from their first
        logged predictions, once that many are logged (a training profile keeps its features: the
        predictions add the outputs)."""
        for model, config in self.registry.monitoring.configs().items():
            if config.reference_rows <= 0:
                continue
            try:
                versions = self.registry.models.list_versions(model, state=VersionState.READY)
            except ModelportError:
                continue
            for record in versions:
                if self.registry.monitoring.profile(model, record.version) is not None:
                    continue
                rows = self.predictions.window(model, version=record.version, since=0, max_rows=1_000_000)
                if len(rows) < config.reference_rows:
                    continue
                rows.sort(key=lambda r: r["time"])
                first = rows[: config.reference_rows]
                made = profile_of_rows(first, _feature_names(record))
                trained = (record.metadata or {}).get("profile")
                source = "predictions"
                if trained:
                    made["features"], made["rows"], source = (
                        trained["features"],
                        trained["rows"],
                        "training+predictions",
                    )
                self.registry.monitoring.set_profile(model, record.version, source, made, replace=False)

    # ---- the report ----------------------------------------------------------------------------
    def report(
        self, model: str, window_seconds: int, *, now: float | None = None, details: bool = True
    ) -> dict[str, Any]:
        """``details`` False leaves out quality and drift (null): traffic and latency only, cheap enough
        to poll every few seconds."""
        if not 1 <= window_seconds <= MAX_WINDOW:
            raise InvalidInput(f"window must be between 1 s and {MAX_WINDOW} s", field="window")
        now = time.time() if now is None else now
        width = self.stats.bucket_seconds
        end = math.ceil(now / width) * width
        step = max(width, math.ceil(window_seconds / MAX_POINTS / width) * width)
        start = end - math.ceil(window_seconds / step) * step
        buckets = self.registry.monitoring.stats(model, start, end)
        buckets += [b for b in self.stats.peek() if b.model == model and start <= b.bucket < end]
        totals = summarise(buckets)
        aliases: dict[int, list[str]] = {}
        for alias in self.registry.aliases.of_model(model):
            aliases.setdefault(alias.version, []).append(alias.name)
        serving = self._serving(model)
        wanted = set(totals) | set(aliases) | ({serving} if serving is not None else set())
        feedback = self._quality(model, since=now - window_seconds) if details else {}
        versions = []
        for number in sorted(wanted, reverse=True):
            try:
                record = self.registry.models.get_version(model, number)
            except ModelportError:
                continue  # deleted: its statistics go with it
            summary = totals.get(number)
            figures = summary.figures(end - start) if summary else _empty_figures()
            versions.append(
                {
                    "version": number,
                    "state": record.state.value,
                    "aliases": sorted(aliases.get(number, [])),
                    "serving": number == serving,
                    "requests": figures["requests"],
                    "errors": figures["errors"],
                    "error_rate": figures["error_rate"],
                    "throughput": figures["throughput"],
                    "latency": {k: figures[k] for k in ("p50", "p90", "p99", "mean")},
                    "series": [
                        {
                            "t": iso(start + i * step),
                            "requests": p.requests,
                            "errors": p.errors,
                            "p50": p.quantile(0.5),
                            "p99": p.quantile(0.99),
                        }
                        for i, p in enumerate(series(buckets, number, start, end, step))
                    ],
                    "quality": feedback.get(number),
                    "drift": self.drift(record, since=now - window_seconds, until=now) if details else None,
                }
            )
        stored = self.predictions.stats(model)
        config = self.registry.monitoring.config(model)
        return {
            "model": model,
            "window": {"seconds": window_seconds, "start": iso(start), "end": iso(end), "step_seconds": step},
            "versions": versions,
            "alerts": self.alerting.rules(model),
            "logging": {
                "sample_rate": config.sample_rate,
                "reference_rows": config.reference_rows,
                "rows": stored.get("rows", 0),
                "bytes": stored.get("bytes", 0),
            },
        }

    def _serving(self, model: str) -> int | None:
        try:
            return self.resolve(model, None).version
        except ModelportError:
            return None

    def _quality(self, model: str, since: float) -> dict[int, dict[str, Any]]:
        """Per version, from feedback received in the window joined with the logged predictions."""
        received = self.registry.monitoring.feedback(model, datetime.fromtimestamp(since, UTC))
        if not received:
            return {}
        logged = self.predictions.find(model, [f.request_id for f in received])
        labels: dict[int, list[tuple[Any, str]]] = {}
        values: dict[int, list[tuple[Any, float]]] = {}
        for item in received:
            row = logged.get(item.request_id)
            if row is None:
                continue
            name = quality.prediction_output(row["outputs"])
            predicted = quality.first_value(row["outputs"].get(name)) if name else None
            if predicted is None:
                continue
            if item.label is not None:
                labels.setdefault(row["version"], []).append((predicted, item.label))
            elif item.value is not None:
                values.setdefault(row["version"], []).append((predicted, item.value))
        out: dict[int, dict[str, Any]] = {}
        for version, pairs in labels.items():
            out[version] = quality.classification(pairs, self._classes(model, version))
        for version, reg in values.items():
            out.setdefault(version, quality.regression(reg))
        return out

    def _classes(self, model: str, version: int) -> list[Any] | None:
        try:
            classes = (self.registry.models.get_version(model, version).metadata or {}).get("classes")
        except ModelportError:
            return None
        return list(classes) if classes else None

    def drift(self, record: VersionRecord, *, since: float, until: float) -> dict[str, Any]:
        """Drift of the version's logged inputs (and predictions, and embeddings) in the window."""
        result: dict[str, Any] = {"status": "no_reference", "reference": None, "rows": 0, "features": [],
                                  "prediction": None, "embedding": None}  # fmt: skip
        reference = self.reference(record)
        if reference is None:
            return result
        source, profile = reference
        rows = self.predictions.window(
            record.model, version=record.version, since=since, until=until, max_rows=DRIFT_ROWS
        )
        result["reference"] = {"source": source, "rows": profile.get("rows")}
        result["rows"] = len(rows)
        inputs = stack(r["inputs"] for r in rows)
        outputs = stack(r["outputs"] for r in rows)
        vectors = outputs.pop("embedding", None)
        verdicts = []
        if profile.get("features"):
            names = _feature_names(record) or list(profile["features"])
            found = drift.drift_report(profile, drift.columns_of(inputs, names))
            result["features"] = found["features"]
            verdicts.append(found["status"])
        if profile.get("outputs", {}).get("features") and outputs:
            predicted = drift.drift_report(profile["outputs"], drift.columns_of(outputs))
            scored = [f for f in predicted["features"] if f.get("psi") is not None]
            if scored:
                result["prediction"] = {
                    "psi": max(f["psi"] for f in scored),
                    "drifted": any(f["drifted"] for f in scored),
                    "features": scored,
                }
            verdicts.append(predicted["status"])
        centre = (profile.get("embedding") or {}).get("centroid")
        if centre and vectors is not None and vectors.ndim == 2 and len(vectors):
            result["embedding"] = drift.centroid_drift(centre, vectors.astype(np.float64))
            verdicts.append("drift" if result["embedding"]["drifted"] else "ok")
        if "drift" in verdicts:
            result["status"] = "drift"
        elif "ok" in verdicts:
            result["status"] = "ok"
        elif verdicts:
            result["status"] = verdicts[0]
        return result

    # ---- alerts: the figure a rule watches (``alerting.Alerting`` decides and notifies) ----------
    def measure(
        self, rule: AlertRule, record: VersionRecord, now: float
    ) -> tuple[float | None, dict[str, Any]]:
        """The rule's figure for its version over its window, and what it was computed from."""
        since = now - rule.window_seconds
        if rule.kind in ("p99", "error_rate"):
            width = self.stats.bucket_seconds
            buckets = [
                b
                for b in self.registry.monitoring.stats(
                    record.model, int(since // width) * width, int(now) + width
                )
                if b.version == record.version
            ]
            total = summarise(buckets).get(record.version)
            if total is None or total.requests == 0:
                return None, {"requests": 0}
            if rule.kind == "p99":
                return total.quantile(0.99), {"requests": total.requests}
            return total.errors / total.requests, {"requests": total.requests, "errors": total.errors}
        if rule.kind == "accuracy":
            found = self._quality(record.model, since).get(record.version)
            if not found or found.get("accuracy") is None:
                return None, {"feedback": 0}
            return found["accuracy"], {"feedback": found["feedback"]}
        report = self.drift(record, since=since, until=now)
        # the PSI of what drifted by the drift rule (a noisy PSI of a small window is not drift)
        scores = [
            f["psi"] if f.get("drifted") else 0.0 for f in report["features"] if f.get("psi") is not None
        ]
        if report["prediction"]:
            scores.append(report["prediction"]["psi"] if report["prediction"]["drifted"] else 0.0)
        if report["embedding"] and report["embedding"].get("cosine_distance") is not None:
            scores.append(report["embedding"]["cosine_distance"])
        if report["status"] in ("no_reference", "insufficient_data") or not scores:
            return None, {"status": report["status"], "rows": report["rows"]}
        worst = max(report["features"], key=lambda f: f.get("psi") or 0.0, default=None)
        return max(scores), {"rows": report["rows"], "feature": worst["name"] if worst else None}


def _empty_figures() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "error_rate": None, "throughput": 0.0,
            "p50": None, "p90": None, "p99": None, "mean": None}  # fmt: skip


def _feature_names(record: VersionRecord) -> list[str] | None:
    lineage = (record.metadata or {}).get("lineage") or {}
    features = lineage.get("features")
    return list(features) if features else None


def _prediction_output_name(record: VersionRecord) -> str:
    outputs = [spec.get("name") for spec in (record.signature or {}).get("outputs", [])]
    return quality.prediction_output(dict.fromkeys(o for o in outputs if o)) or "predict"


def stack(tensors: Any) -> dict[str, np.ndarray]:
    """Logged rows' tensors (``{name: nested lists}`` per request) as one array per name, requests
    stacked along the first axis (requests whose shapes disagree with the first are left out)."""
    parts: dict[str, list[np.ndarray]] = {}
    for item in tensors:
        for name, value in item.items():
            array = np.asarray(value)
            if array.ndim == 0:
                array = array.reshape(1)
            seen = parts.setdefault(name, [])
            if not seen or seen[0].shape[1:] == array.shape[1:]:
                seen.append(array)
    return {name: np.concatenate(arrays) for name, arrays in parts.items() if arrays}


def profile_of_rows(rows: Sequence[Mapping[str, Any]], features: Sequence[str] | None) -> dict[str, Any]:
    """A reference profile from logged predictions: inputs and outputs, or for an embedding model the
    centroid of its vectors (its texts, all different, make no useful categorical profile)."""
    inputs = stack(r["inputs"] for r in rows)
    outputs = stack(r["outputs"] for r in rows)
    vectors = outputs.pop("embedding", None)
    if vectors is not None and vectors.ndim == 2:
        return drift.build_profile({}, embedding=vectors.astype(np.float64))
    made = drift.build_profile(drift.columns_of(inputs, features))
    made["outputs"] = drift.build_profile(drift.columns_of(outputs))
    return made
