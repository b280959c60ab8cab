#!/usr/bin/env python3
"""modelport against the anchors, same models, payloads, pinning and load generator, in one run.

    .venv/bin/python bench/run.py                          # modelport, plus anchors whose venvs exist
    .venv/bin/python bench/run.py --systems none --duration 10 --warmup 3     # modelport only, quicker
    .venv/bin/python bench/run.py --systems none --baseline /tmp/mp-before --rounds 2  # before/after

It copies the anchor harness (``--anchors DIR``) to a work directory, trains the anchor models the way
its ``train_models.py`` does (saved as skops for modelport), serves them with modelport pinned to core 1
(``taskset -c 1``, one BLAS thread), and loads each point with the harness's ``load.py`` (wrk pinned to
core 0). Anchors run through the harness's ``anchors.py`` when ``$ANCHOR_VENVS`` (default /tmp/anchors,
made by the harness's ``setup_venvs.sh``) exists. Then: ``--workers 1`` against ``--workers 2`` with
nothing pinned, and the resident memory of an idle server with 10 small models loaded.
Prints req/s, p50, p99 and rows/s per point and the ratio modelport/anchor.

``--baseline DIR`` (another checkout with its own ``.venv``, e.g. the code before a change) also serves
that checkout, on core 1 beside this one, loads each point on both in turn ``--rounds`` times (now,
baseline, then baseline, now, ...), prints both and now/baseline per point, and runs the workers and memory
checks on both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
KEY = "mp_bench-key-0123456789abcdef"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
POINTS = "logreg:1:64,logreg:32:8,rf:1:64"
TARGETS = {  # (model, rows, concurrency): (metric, target) from the serving-engine issue
    ("logreg", 1, 64): ("rps", 5000),
    ("logreg", 32, 8): ("rows_s", 100_000),
    ("rf", 1, 64): ("rps", 3000),
}


Medians = dict[tuple[str, str, int, int], dict]  # (system, model, rows, concurrency) -> record


def train(models_dir: Path) -> dict[str, Path]:
    """The harness's recipe (train_models.py), saved as skops; also rows32.json and expected.json."""
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models_dir.mkdir(parents=True, exist_ok=True)
    x, y = load_breast_cancer(return_X_y=True)
    x32 = x.astype(np.float32)
    models = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "rf": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
    }
    paths = {}
    for name, model in models.items():
        model.fit(x32, y)
        paths[name] = models_dir / f"{name}.skops"
        skops.io.dump(model, paths[name])
    rows = x[:32].tolist()
    (models_dir / "rows32.json").write_text(json.dumps(rows))
    expected = {
        n: m.predict(np.asarray(rows, dtype=np.float32)).astype(int).tolist() for n, m in models.items()
    }
    (models_dir / "expected.json").write_text(json.dumps(expected))
    return paths


class Server:
    def __init__(
        self, data_dir: Path, port: int, cpus: str | None, workers: int = 1, repo: Path = REPO
    ) -> None:
        cmd = [str(repo / ".venv/bin/modelport"), "serve", "--port", str(port), "--data-dir", str(data_dir)]
        cmd += ["--workers", str(workers), "--log-level", "warning"]
        if cpus:
            cmd = ["taskset", "-c", cpus, *cmd]
        env = {**os.environ, **ONE_THREAD, "MODELPORT_ADMIN_KEY": KEY}
        self.url = f"http://127.0.0.1:{port}"
        self.log = (data_dir.parent / f"modelport-{port}.log").open("w")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"modelport exited; see {self.log.name}") from None
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"modelport did not start; see {self.log.name}")

    def call(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
    ) -> object:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {KEY}")
        req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"null")

    def deploy(self, name: str, artifact: Path) -> None:
        v = self.call(
            "POST", f"/api/v1/models/{name}/versions", artifact.read_bytes(), "application/octet-stream"
        )
        assert isinstance(v, dict) and v["state"] == "ready", v
        self.call(
            "PUT", f"/api/v1/models/{name}/aliases/production", json.dumps({"version": v["version"]}).encode()
        )

    def rss_mb(self) -> float:
        total = 0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
        return total / 1e6

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session, and its children: TERM, then KILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                parents[int(entry)] = int(stat[stat.rfind(")") + 2 :].split()[1])
            except OSError:
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        out += kids
        todo += kids
    return out


def load(
    harness: Path,
    server: Server,
    model: str,
    rows: int,
    conc: int,
    args: argparse.Namespace,
    out: Path,
    label: str = "modelport",
    pinned: bool = True,
) -> None:
    env = {**os.environ, "BENCH_AUTH": KEY, "BENCH_INPUT_NAME": "input-0"}
    cmd = [
        sys.executable,
        str(harness / "load.py"),
        "--base-url",
        server.url,
        "--model",
        model,
        "--label",
        label,
        "--rows",
        str(rows),
        "--concurrency",
        str(conc),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--out",
        str(out),
        "--server-pid",
        str(server.proc.pid),
        "--data",
        str(harness / "models/rows32.json"),
        "--expected",
        str(harness / "models/expected.json"),
    ]
    if not pinned:
        cmd += ["--loadgen-cpus", "", "--server-cpus", ""]
    subprocess.run(cmd, env=env, check=False)


def records(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def medians(out: Path) -> Medians:
    """Per (system, model, rows, concurrency): the median of each figure over the rounds, errors summed,
    and each round's req/s in ``rounds``."""
    runs: dict[tuple[str, str, int, int], list[dict]] = defaultdict(list)
    for r in records(out):
        if "rps" in r:
            runs[(r["system"], r["model"], r["rows"], r["concurrency"])].append(r)
    return {
        key: {
            **rs[-1],
            **{f: float(np.median([r[f] for r in rs])) for f in ("rps", "rows_s", "p50_ms", "p99_ms")},
            "errors": sum(r["errors"] for r in rs),
            "rounds": [r["rps"] for r in rs],
        }
        for key, rs in runs.items()
    }


def report(meds: Medians, points: list[tuple[str, int, int]]) -> None:
    recs = [r for r in meds.values() if r["system"] != "baseline"]
    print("\n## Served points (same run, server on core 1, wrk on core 0)\n")
    print("| model | rows | conc | system | req/s | rows/s | p50 ms | p99 ms | errors | modelport / system |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, rows, conc in points:
        here = [r for r in recs if (r["model"], r["rows"], r["concurrency"]) == (model, rows, conc)]
        ours = next((r for r in here if r["system"] == "modelport"), None)
        for r in sorted(here, key=lambda r: r["system"] != "modelport"):
            ratio = f"{ours['rows_s'] / r['rows_s']:.1f}x" if ours and r is not ours and r["rows_s"] else ""
            print(
                f"| {model} | {rows} | {conc} | {r['system']} | {r['rps']:,.0f} | {r['rows_s']:,.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {ratio} |"
            )
        target = TARGETS.get((model, rows, conc))
        if ours and target:
            metric, goal = target
            verdict = "meets" if float(ours[metric]) >= goal else "BELOW"
            print(f"|  |  |  | target | {metric} >= {goal:,} | | | | | {verdict} |")


def report_baseline(meds: Medians, points: list[tuple[str, int, int]], baseline: Path) -> None:
    print(f"\n## This checkout (now) / {baseline} (baseline): same run, both on core 1, loaded in turn\n")
    print("Medians over the rounds, now / baseline (ratio); last column: the req/s ratio of each round.\n")
    print("| model | rows | conc | req/s | p50 ms | p99 ms | errors | each round |")
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        now, base = meds.get(("modelport", *p), {}), meds.get(("baseline", *p), {})
        cells = [
            f"{now[f]:{fmt}} / {base[f]:{fmt}} ({now[f] / base[f]:.2f})" if now and base and base[f] else "-"
            for f, fmt in (("rps", ",.0f"), ("p50_ms", ".1f"), ("p99_ms", ".1f"))
        ]
        cells.append(f"{now.get('errors', '-')} / {base.get('errors', '-')}")
        pairs = zip(now.get("rounds", []), base.get("rounds", []), strict=False)
        cells.append(", ".join(f"{a / b:.2f}" if b else "-" for a, b in pairs))
        print(f"| {' | '.join(map(str, p))} | {' | '.join(cells)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchors", default=str(REPO.parent / "shared" / "bench-anchors"), help="harness folder")
    ap.add_argument(
        "--systems",
        default="mlserver,mlserver-pw0,bentoml,fastapi,fastapi-onnx",
        help="anchors to run beside modelport ('none' for modelport only)",
    )
    ap.add_argument("--points", default=POINTS, help="model:rows:concurrency,...")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="another checkout with its own .venv to compare against")
    ap.add_argument(
        "--rounds", type=int, default=1, help="loads of each modelport point (per checkout, in turn); medians"
    )
    ap.add_argument("--skip-points", action="store_true", help="only the workers and memory checks")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset: apt-get install -y wrk util-linux")
    sides = {"modelport": REPO}  # label -> checkout whose .venv/bin/modelport serves
    if args.baseline:
        sides["baseline"] = Path(args.baseline).resolve()
        if not (sides["baseline"] / ".venv/bin/modelport").exists():
            raise SystemExit(
                f"no {sides['baseline']}/.venv/bin/modelport: pip install -e '{args.baseline}[all]'"
            )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="modelport-bench-"))
    harness = work / "harness"
    if not harness.exists():
        shutil.copytree(args.anchors, harness, ignore=shutil.ignore_patterns("models", "results"))
    artifacts = train(harness / "models")
    out = work / time.strftime("results-%Y%m%d-%H%M%S.jsonl")
    points = [(m, int(r), int(c)) for m, r, c in (p.split(":") for p in args.points.split(","))]
    print(f"work dir {work}; results -> {out}", flush=True)

    if not args.skip_points:
        run_points(harness, work, artifacts, points, args, out, sides)

    if not args.skip_workers:
        compare_workers(harness, work, artifacts, args, sides)
    if not args.skip_idle:
        idle_memory(harness, work, artifacts, sides)


def _who(label: str) -> str:
    return "" if label == "modelport" else f" ({label})"


def run_points(
    harness: Path,
    work: Path,
    artifacts: dict[str, Path],
    points: list[tuple[str, int, int]],
    args: argparse.Namespace,
    out: Path,
    sides: dict[str, Path],
) -> None:
    servers: dict[str, Server] = {}
    try:
        # all up at once, pinned alike; one loaded at a time
        for i, (label, repo) in enumerate(sides.items()):
            servers[label] = Server(work / f"data-{label}", 18500 + i, cpus="1", repo=repo)
            for name, path in artifacts.items():
                servers[label].deploy(name, path)
        for model, rows, conc in points:
            for round_ in range(args.rounds):
                order = list(servers.items())
                for label, server in order if round_ % 2 == 0 else order[::-1]:  # no side always first
                    load(harness, server, model, rows, conc, args, out, label=label)
    finally:
        for server in servers.values():
            server.stop()
    venvs = Path(os.environ.get("ANCHOR_VENVS", "/tmp/anchors"))
    systems = [s for s in args.systems.split(",") if s and s != "none"]
    if systems and venvs.exists():
        if not (harness / "models" / "logreg.joblib").exists():  # the anchors load the harness's own files
            subprocess.run([str(venvs / "fastapi/bin/python"), str(harness / "train_models.py")], check=True)
            train(harness / "models")  # keep rows/expected identical to what modelport was checked with
        for model, rows, conc in points:
            subprocess.run(
                [
                    sys.executable,
                    str(harness / "anchors.py"),
                    "--systems",
                    ",".join(systems),
                    "--models",
                    model,
                    "--rows",
                    str(rows),
                    "--concurrency",
                    str(conc),
                    "--duration",
                    str(args.duration),
                    "--warmup",
                    str(args.warmup),
                    "--out",
                    str(out),
                ],
                check=False,
            )
    elif systems:
        print(f"(no anchor venvs at {venvs}: run the harness's setup_venvs.sh to compare in the same run)")
    meds = medians(out)
    report(meds, points)
    if "baseline" in sides:
        report_baseline(meds, points, sides["baseline"])


def compare_workers(
    harness: Path, work: Path, artifacts: dict[str, Path], args: argparse.Namespace, sides: dict[str, Path]
) -> None:
    print("\n## --workers 1 vs --workers 2 (nothing pinned; wrk shares the 2 cores)\n")
    wout = work / "workers.jsonl"
    for i, (label, repo) in enumerate(sides.items()):
        for n in (1, 2):
            srv = Server(work / f"data-{label}-w{n}", 18510 + 4 * i + n, cpus=None, workers=n, repo=repo)
            try:
                srv.deploy("logreg", artifacts["logreg"])
                load(harness, srv, "logreg", 1, 64, args, wout, label=f"{label}-w{n}", pinned=False)
            finally:
                srv.stop()
    res = {r["system"]: r for r in records(wout) if "rps" in r}
    for label, r in res.items():
        print(f"{label}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    for label in sides:
        if {f"{label}-w1", f"{label}-w2"} <= res.keys():
            ratio = res[f"{label}-w2"]["rps"] / res[f"{label}-w1"]["rps"]
            print(f"workers 2 / workers 1{_who(label)}: {ratio:.2f}x")


def idle_memory(harness: Path, work: Path, artifacts: dict[str, Path], sides: dict[str, Path]) -> None:
    print("\n## Idle resident memory with 10 small models loaded\n")
    row = json.loads((harness / "models/rows32.json").read_text())[0]
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP32", "data": row}]})
    for i, (label, repo) in enumerate(sides.items()):
        srv = Server(work / f"data-{label}-idle", 18520 + i, cpus="1", repo=repo)
        try:
            base = srv.rss_mb()
            for j in range(10):
                srv.deploy(f"small-{j}", artifacts["logreg"])
                srv.call("POST", f"/v2/models/small-{j}/infer", body.encode())
            time.sleep(2)
            print(
                f"RSS{_who(label)}: {base:.0f} MB empty, {srv.rss_mb():.0f} MB with 10 models loaded"
                " (target < 300 MB)"
            )
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
