#!/usr/bin/env python3
"""What monitoring costs serving: the logreg 1-row, 64-concurrent point with the prediction log off and
with every request logged (100% sampling), on one server, in one run.

    .venv/bin/python bench/monitoring.py                       # 3 rounds of 15 s each way
    .venv/bin/python bench/monitoring.py --rounds 5 --duration 20

The server is pinned to core 1 with one BLAS thread and wrk to core 0, as in ``bench/run.py`` (same
model, rows and load generator: the anchors harness's ``load.py``). Rounds alternate off, on, on, off,
... so drift of the machine falls on both sides; the figures are the medians. It then checks that
the log holds what was served (rows written, none dropped) and prints the ratio on/off of req/s and
of p99. The target: on/off req/s >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, Server, load, records, train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anchors", type=Path, default=REPO.parent / "shared" / "bench-anchors")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset: apt-get install -y wrk util-linux")
    work = Path(tempfile.mkdtemp(prefix="mp-bench-monitoring-"))
    harness = work / "harness"
    shutil.copytree(args.anchors, harness, ignore=shutil.ignore_patterns("results*", "__pycache__"))
    artifacts = train(harness / "models")
    out = work / "results.jsonl"
    server = Server(work / "data", 18530, cpus="1")
    try:
        server.deploy("logreg", artifacts["logreg"])
        for round_ in range(args.rounds):
            sides = [0.0, 1.0] if round_ % 2 == 0 else [1.0, 0.0]
            for rate in sides:
                body = json.dumps({"sample_rate": rate}).encode()
                server.call("PUT", "/api/v1/models/logreg/monitoring/config", body)
                time.sleep(1.5)  # every process follows the rate within a second
                label = "log-100%" if rate else "log-off"
                load(harness, server, "logreg", 1, 64, args, out, label=label)
        server.call("PUT", "/api/v1/models/logreg/monitoring/config", json.dumps({"sample_rate": 0}).encode())
        time.sleep(3)  # the last rows flushed
        logged = server.call("GET", "/api/v1/models/logreg/monitoring?window=1h")
    finally:
        server.stop()
    runs = [r for r in records(out) if "rps" in r]
    figures = {}
    for label in ("log-off", "log-100%"):
        mine = [r for r in runs if r["system"] == label]
        figures[label] = {f: float(np.median([r[f] for r in mine])) for f in ("rps", "p50_ms", "p99_ms")}
        figures[label]["errors"] = sum(int(r["errors"]) for r in mine)
        figures[label]["rounds"] = [round(float(r["rps"])) for r in mine]
    print("\n## Prediction log overhead: logreg, 1 row, 64 concurrent (server on core 1, wrk on core 0)\n")
    print("| prediction log | req/s (median) | rounds | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for label, f in figures.items():
        ms = f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f}"
        print(f"| {label} | {f['rps']:,.0f} | {f['rounds']} | {ms} | {f['errors']} |")
    ratio = figures["log-100%"]["rps"] / figures["log-off"]["rps"]
    p99 = figures["log-100%"]["p99_ms"] / figures["log-off"]["p99_ms"]
    verdict = "meets" if ratio >= 0.90 else "BELOW"
    print(f"\nreq/s with 100% logging / off: {ratio:.3f} (target >= 0.90: {verdict}); p99 ratio {p99:.2f}")
    assert isinstance(logged, dict)
    rows = logged["logging"]["rows"]
    served = logged["versions"][0]["requests"] if logged["versions"] else 0
    print(f"rows in the prediction log: {rows:,} ({logged['logging']['bytes'] / 1e6:.1f} MB); "
          f"requests counted over the hour: {served:,}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
