"""What the pages show, shaped from registry records and monitoring reports (no web framework here).

A monitoring report (``MonitoringService.report``) is a plain dict; ``parse_report`` reads it once into
small records with safe defaults, so that a figure missing from it is shown as "—" rather than failing
the page. ``chart_data`` turns a report into the series the model page's charts draw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelport.registry import AliasRecord, ModelRecord, VersionRecord

WINDOWS = {900: "15m", 3600: "1h", 21600: "6h", 86400: "24h"}
DEFAULT_WINDOW = 3600
DRIFT_LABELS = {
    "ok": "no drift",
    "drift": "drift",
    "insufficient_data": "too little data",
    "no_reference": "no reference",
}
DASH = "—"


# ---- monitoring reports ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionStats:
    version: int
    aliases: tuple[str, ...] = ()
    serving: bool = False
    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    throughput: float | None = None
    latency: dict[str, float | None] = field(default_factory=dict)
    series: tuple[dict[str, Any], ...] = ()
    quality: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None

    @property
    def p99(self) -> float | None:
        return self.latency.get("p99")

    @property
    def drift_status(self) -> str | None:
        return None if self.drift is None else str(self.drift.get("status") or "") or None

    @property
    def drifted_features(self) -> list[str]:
        features = (self.drift or {}).get("features") or []
        return [str(f.get("name")) for f in features if f.get("drifted")]


@dataclass(frozen=True)
class Report:
    window_seconds: int
    step_seconds: int
    versions: tuple[VersionStats, ...]
    alerts: tuple[dict[str, Any], ...]
    logging: dict[str, Any] | None
    start: str | None = None
    end: str | None = None

    @property
    def requests(self) -> int:
        return sum(v.requests for v in self.versions)

    @property
    def errors(self) -> int:
        return sum(v.errors for v in self.versions)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def p99(self) -> float | None:
        """The worst p99 of the versions that answered requests in the window."""
        values = [v.p99 for v in self.versions if v.requests and v.p99 is not None]
        return max(values) if values else None

    @property
    def serving(self) -> tuple[VersionStats, ...]:
        return tuple(v for v in self.versions if v.serving)

    @property
    def drift_status(self) -> str | None:
        """At a glance: drift if any serving version drifted, else ok if one was checked, else why not."""
        statuses = {v.drift_status for v in (self.serving or self.versions)} - {None}
        for status in ("drift", "ok", "insufficient_data", "no_reference"):
            if status in statuses:
                return status
        return next(iter(sorted(s for s in statuses if s)), None)

    @property
    def firing(self) -> tuple[dict[str, Any], ...]:
        return tuple(a for a in self.alerts if a.get("state") == "firing")

    def of(self, version: int) -> VersionStats | None:
        return next((v for v in self.versions if v.version == version), None)

    @property
    def with_drift(self) -> tuple[VersionStats, ...]:
        return tuple(v for v in self.versions if v.drift is not None and (v.serving or v.requests))

    @property
    def with_quality(self) -> tuple[VersionStats, ...]:
        return tuple(v for v in self.versions if v.quality is not None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def parse_report(raw: dict[str, Any] | None) -> Report | None:
    if not raw:
        return None
    window = raw.get("window") or {}
    versions = []
    for v in raw.get("versions") or []:
        latency = v.get("latency") or {}
        versions.append(
            VersionStats(
                version=_int(v.get("version")),
                aliases=tuple(str(a) for a in v.get("aliases") or ()),
                serving=bool(v.get("serving")),
                requests=_int(v.get("requests")),
                errors=_int(v.get("errors")),
                error_rate=_number(v.get("error_rate")),
                throughput=_number(v.get("throughput")),
                latency={k: _number(latency.get(k)) for k in ("p50", "p90", "p99", "mean")},
                series=tuple(v.get("series") or ()),
                quality=v.get("quality") or None,
                drift=v.get("drift") or None,
            )
        )
    versions.sort(key=lambda s: s.version)
    return Report(
        window_seconds=_int(window.get("seconds")) or DEFAULT_WINDOW,
        step_seconds=_int(window.get("step_seconds")) or 60,
        versions=tuple(versions),
        alerts=tuple(raw.get("alerts") or ()),
        logging=raw.get("logging") or None,
        start=window.get("start"),
        end=window.get("end"),
    )


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def chart_data(report: Report | None) -> dict[str, Any]:
    """The charts' series: requests per second per version, and p50 / p99 latency (ms) per version, on
    one time axis (epoch seconds, oldest first). ``points``: how many (time, version) points saw a
    request, so a reader can tell an empty chart from a quiet one."""
    if report is None:
        return {"x": [], "traffic": {"labels": [], "series": []}, "latency": {"labels": [], "series": []},
                "points": 0, "step": 60}  # fmt: skip
    stamps: set[float] = set()
    rows: dict[int, dict[float, dict[str, Any]]] = {}
    for v in report.versions:
        by_time = rows.setdefault(v.version, {})
        for point in v.series:
            t = _epoch(point.get("t"))
            if t is not None:
                stamps.add(t)
                by_time[t] = point
    x = sorted(stamps)
    step = report.step_seconds
    charted = [v for v in report.versions if v.serving or v.requests]
    traffic_labels, traffic, latency_labels, latency = [], [], [], []
    points = 0
    for v in charted:
        by_time = rows.get(v.version, {})
        requests = [_number(by_time.get(t, {}).get("requests")) for t in x]
        points += sum(1 for r in requests if r)
        traffic_labels.append(_version_label(v))
        traffic.append([None if r is None else round(r / step, 4) for r in requests])
        for quantile in ("p50", "p99"):
            latency_labels.append(f"v{v.version} {quantile}")
            values = [_number(by_time.get(t, {}).get(quantile)) for t in x]
            latency.append([None if s is None else round(s * 1000, 3) for s in values])
    return {
        "x": x,
        "step": step,
        "traffic": {"labels": traffic_labels, "series": traffic},
        "latency": {"labels": latency_labels, "series": latency},
        "points": points,
    }


def _version_label(v: VersionStats) -> str:
    return f"v{v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases else "")


# ---- models ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSummary:
    model: ModelRecord
    aliases: tuple[AliasRecord, ...]
    versions: tuple[VersionRecord, ...]
    report: Report | None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def serving(self) -> list[int]:
        if self.report is not None and self.report.serving:
            return [v.version for v in self.report.serving]
        return sorted({a.version for a in self.aliases})

    @property
    def framework(self) -> str | None:
        serving = set(self.serving)
        chosen = [v for v in self.versions if v.version in serving] or list(self.versions[-1:])
        return chosen[-1].framework if chosen else None

    def aliases_of(self, version: int) -> list[str]:
        return [a.name for a in self.aliases if a.version == version]


def lineage_of(record: VersionRecord) -> dict[str, Any] | None:
    """The compact facts of where a version came from: its training job (dataset, estimator, metric),
    or the version it was made from (``source``)."""
    meta = record.metadata or {}
    lineage = meta.get("lineage")
    source = meta.get("source") or (lineage or {}).get("source")
    if not lineage and not source:
        return None
    lineage = dict(lineage or {})
    dataset = lineage.get("dataset")
    if isinstance(dataset, dict):
        name, version = dataset.get("name"), dataset.get("version")
        dataset = name if version is None else f"{name}:{version}"
    metric = lineage.get("metric")
    found = lineage.get("metrics")
    metrics: dict[str, Any] = found if isinstance(found, dict) else {}
    score = metrics.get(metric) if metric else None
    if isinstance(source, dict):
        source = source.get("version") or source.get("model")
    return {
        "job": lineage.get("job"),
        "dataset": dataset,
        "estimator": lineage.get("estimator"),
        "metric": metric,
        "score": _number(score),
        "metrics": {k: v for k, v in metrics.items() if _number(v) is not None},
        "source": source,
    }


def flat_metrics(metrics: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics (``{"holdout": {"accuracy": 0.93}, "cv": None}``) as labelled pairs, in order."""
    if not isinstance(metrics, dict):
        return []
    pairs: list[tuple[str, Any]] = []
    for name, value in sorted(metrics.items()):
        label = f"{prefix}{name}"
        if isinstance(value, dict):
            pairs += flat_metrics(value, f"{label} ")
        elif value is not None:
            pairs.append((label, value))
    return pairs


# ---- formatting (template filters) -----------------------------------------------------------------
def fmt_seconds(value: Any) -> str:
    s = _number(value)
    if s is None:
        return DASH
    if s < 0.001:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1000:.1f} ms" if s < 0.1 else f"{s * 1000:.0f} ms"
    return f"{s:.2f} s"


def fmt_percent(value: Any) -> str:
    r = _number(value)
    if r is None:
        return DASH
    if r == 0:
        return "0 %"
    if r < 0.0001:
        return "<0.01 %"
    return f"{r * 100:.2f} %" if r < 0.1 else f"{r * 100:.1f} %"


def fmt_count(value: Any) -> str:
    n = _number(value)
    if n is None:
        return DASH
    return f"{int(n):,}".replace(",", "\u202f")


def fmt_number(value: Any, digits: int = 3) -> str:
    n = _number(value)
    if n is None:
        return DASH
    if n != 0 and (abs(n) >= 1e6 or abs(n) < 10**-digits):
        return f"{n:.{digits}g}"
    return f"{n:.{digits}f}".rstrip("0").rstrip(".") or "0"


def fmt_bytes(value: Any) -> str:
    n = _number(value)
    if n is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return DASH  # pragma: no cover


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return as_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def fmt_when(value: Any) -> str:
    moment = as_datetime(value)
    return DASH if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_iso(value: Any) -> str:
    moment = as_datetime(value)
    return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fmt_ago(value: Any, now: datetime | None = None) -> str:
    moment = as_datetime(value)
    if moment is None:
        return DASH
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        text = "seconds"
    elif seconds < 3600:
        text = f"{round(seconds / 60)} min"
    elif seconds < 86400 * 2:
        text = f"{round(seconds / 3600)} h"
    else:
        text = f"{round(seconds / 86400)} days"
    if text == "seconds":
        return "in a few seconds" if future else "just now"
    return f"in {text}" if future else f"{text} ago"


def fmt_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def fmt_compact(value: Any) -> str:
    """A dict as ``key=value`` pairs on one line (audit details)."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    return "  ".join(
        f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in value.items()
    )


FILTERS = {
    "seconds": fmt_seconds,
    "percent": fmt_percent,
    "thousands": fmt_count,
    "number": fmt_number,
    "bytes": fmt_bytes,
    "when": fmt_when,
    "iso": fmt_iso,
    "ago": fmt_ago,
    "pretty_json": fmt_json,
    "compact": fmt_compact,
}
