#!/usr/bin/env python3
"""Training through the API: what a job costs over training in-process, and what it costs serving.

    .venv/bin/python bench/training.py            # about two minutes on 2 cores

1. The same random forest on scikit-learn's digits (same split, params and seed), trained in this process
   and as a job (submit -> version ready, read from the job's own timestamps): the job's overhead is its
   process start, imports, the artifact's push and load check and the holdout scored through the runtime.
2. A logistic regression served to 16 concurrent single-row clients, idle and while a job trains
   (``MODELPORT_JOB_THREADS=1``): req/s and p99 in both, and their ratio. The job is a process of its own,
   so on a machine with a spare core serving should barely notice; on one busy core it shares it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import stop_group  # bench/ is not a package

KEY = "mp_bench-training-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FOREST = {"n_estimators": 300, "max_depth": 12}
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}


def local_fit_seconds() -> float:
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    started = time.perf_counter()
    RandomForestClassifier(random_state=0, n_jobs=1, **FOREST).fit(x_train, y_train)
    return time.perf_counter() - started


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODELPORT_ADMIN_KEY": KEY, "MODELPORT_JOB_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", "--port", str(port), "--data-dir", str(data)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_group(proc)
    raise RuntimeError("the server did not start")


def train_job(api: httpx.Client, model: str) -> dict[str, object]:
    spec = {"model": model, "dataset": "sklearn:digits", "target": "target", "estimator": "random_forest",
            "params": FOREST, "validation": {"holdout": 0.2, "seed": 0}}  # fmt: skip
    job = api.post("/api/v1/jobs", json=spec).json()
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        job = api.get(f"/api/v1/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    return job


def seconds(job: dict[str, object], start: str, end: str) -> float:
    return (datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))).total_seconds()


async def load(url: str, duration: float, clients: int = 16) -> tuple[float, float]:
    latencies: list[float] = []
    stop = time.monotonic() + duration

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = await http.post("/v2/models/iris/infer", json=ROW)
                assert r.status_code == 200, r.text
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / duration, float(np.percentile(latencies, 99)) * 1000


def main() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from skops.io import dump

    local = min(local_fit_seconds() for _ in range(2))
    with tempfile.TemporaryDirectory() as tmp:
        port = 18000 + os.getpid() % 1000
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp) / "data", port)
        try:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as api:
                x, y = load_iris(return_X_y=True)
                dump(LogisticRegression(max_iter=500).fit(x, y), Path(tmp) / "iris.skops")
                api.post("/api/v1/models/iris/versions", content=(Path(tmp) / "iris.skops").read_bytes())
                train_job(api, "warm-up")  # the first job pays for the page cache
                jobs = [train_job(api, "digits") for _ in range(2)]
                total = min(seconds(j, "created_at", "finished_at") for j in jobs)
                running = min(seconds(j, "started_at", "finished_at") for j in jobs)
                print(f"random forest {FOREST} on digits, 1 thread")
                print(f"  in-process fit             {local:6.2f} s")
                print(f"  job, submit -> ready       {total:6.2f} s   ({total / local:.2f}x the fit)")
                print(f"  job, claimed -> ready      {running:6.2f} s   (queue wait {total - running:.2f} s)")
                idle = asyncio.run(load(url, 8))
                spec = {"model": "busy", "dataset": "sklearn:digits", "target": "target",
                        "estimator": "random_forest", "params": {"n_estimators": 2000}}  # fmt: skip
                busy_job = api.post("/api/v1/jobs", json=spec).json()
                while api.get(f"/api/v1/jobs/{busy_job['id']}").json()["state"] != "running":
                    time.sleep(0.1)
                time.sleep(2)  # past its imports: training
                busy = asyncio.run(load(url, 8))
                api.post(f"/api/v1/jobs/{busy_job['id']}/cancel")
                print("logistic regression, 16 concurrent single-row clients")
                print(f"  idle                       {idle[0]:7.0f} req/s  p99 {idle[1]:6.1f} ms")
                print(f"  while a job trains         {busy[0]:7.0f} req/s  p99 {busy[1]:6.1f} ms")
                print(
                    f"  ratio (busy / idle)        {busy[0] / idle[0]:7.2f}x        {busy[1] / idle[1]:6.2f}x"
                )
                print(f"  cores on this machine      {len(os.sched_getaffinity(0))}")
        finally:
            stop_group(server)


if __name__ == "__main__":
    main()
