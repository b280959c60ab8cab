"""``modelport monitor MODEL``: a live terminal view of the monitoring report (``--once`` prints it once)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelport.cli.common import (
    CaFileOpt,
    InsecureOpt,
    KeyOpt,
    Output,
    OutputOpt,
    UrlOpt,
    connect,
    console,
    print_json,
)

BARS = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {"ok": "green", "drift": "bold red", "firing": "bold red", "insufficient_data": "yellow",
                "no_reference": "dim"}  # fmt: skip


def sparkline(values: list[float], width: int = 30) -> str:
    """``values`` as bars, added up into at most ``width`` of them."""
    per = max(1, -(-len(values) // width))
    values = [sum(values[i : i + per]) for i in range(0, len(values), per)]
    top = max(values, default=0) or 1
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _share(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _quality(found: dict[str, Any] | None) -> str:
    if not found:
        return "-"
    if found["task"] == "classification":
        return f"acc {_share(found.get('accuracy'))} · F1 {found.get('f1') or 0:.2f} (n={found['feedback']})"
    mae, rmse = found.get("mae"), found.get("rmse")
    return f"MAE {mae:.3g} · RMSE {rmse:.3g} (n={found['feedback']})" if mae is not None else "-"


def _styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def render(report: dict[str, Any]) -> Group:
    """The report as tables: versions, the serving version's drift per feature, alerts."""
    window = report["window"]
    logging = report["logging"]
    title = Text.assemble(
        (f"{report['model']}", "bold"),
        f"  window {window['seconds']} s (step {window['step_seconds']} s)  ·  ",
        f"prediction log {_share(logging['sample_rate'])} sampled, {logging['rows']} rows",
    )
    versions = Table(title="versions", expand=True)
    for column in ("version", "aliases", "requests", "req/s", "errors", "p50", "p99", "traffic", "quality",
                   "drift"):  # fmt: skip
        versions.add_column(column)
    for v in report["versions"]:
        label = f"{v['version']}{' *' if v['serving'] else ''}"
        versions.add_row(
            label,
            ", ".join(v["aliases"]) or "-",
            str(v["requests"]),
            f"{v['throughput']:.2f}" if v["throughput"] is not None else "-",
            _share(v["error_rate"]),
            _ms(v["latency"]["p50"]),
            _ms(v["latency"]["p99"]),
            sparkline([p["requests"] for p in v["series"]]),
            _quality(v["quality"]),
            _styled(v["drift"]["status"]),
        )
    parts: list[Any] = [title, versions]
    serving = next((v for v in report["versions"] if v["serving"]), None)
    if serving and serving["drift"]["features"]:
        drift = Table(title=f"drift of version {serving['version']} ({serving['drift']['rows']} rows)")
        for column in ("feature", "kind", "PSI", "KS p-value", "drifted"):
            drift.add_column(column)
        for f in sorted(serving["drift"]["features"], key=lambda f: -(f.get("psi") or 0))[:12]:
            drift.add_row(
                f["name"],
                f.get("kind") or "-",
                "-" if f.get("psi") is None else f"{f['psi']:.3f}",
                "-" if f.get("ks_pvalue") is None else f"{f['ks_pvalue']:.3g}",
                _styled("drift" if f.get("drifted") else "ok"),
            )
        parts.append(drift)
    if report["alerts"]:
        alerts = Table(title="alerts")
        for column in ("id", "kind", "threshold", "window", "value", "state", "since"):
            alerts.add_column(column)
        for a in report["alerts"]:
            value = "-" if a["value"] is None else f"{a['value']:.4g}"
            alerts.add_row(str(a["id"]), a["kind"], f"{a['threshold']:g}", f"{a['window_seconds']} s", value,
                           _styled(a["state"]), a["changed_at"] or "-")  # fmt: skip
        parts.append(alerts)
    return Group(*parts)


def monitor(
    model: str,
    window: Annotated[str, typer.Option(help="seconds, or 15m, 1h, 7d")] = "15m",
    interval: Annotated[float, typer.Option(min=0.5, help="seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print the report once and exit")] = False,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Watch a model live: traffic, errors, latency, quality, drift and alerts per version (Ctrl-C ends)."""
    with connect(url, api_key, ca_file, insecure) as client:
        report = client.monitoring(model, window)
        if once or output is Output.json:
            print_json(report) if output is Output.json else console.print(render(report))
            return
        try:
            with Live(render(report), console=console, refresh_per_second=4, screen=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(render(client.monitoring(model, window)))
        except KeyboardInterrupt:
            pass
