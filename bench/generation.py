#!/usr/bin/env python3
"""Text generation with continuous batching: one stream against 8 concurrent streams, same server, same run.

    .venv/bin/python bench/generation.py                      # the demo chat model, CPU core 1, 20 s a point
    .venv/bin/python bench/generation.py --duration 10 --streams 1,8,16 --max-tokens 64
    .venv/bin/python bench/generation.py --device cuda --cpus ""   # on a GPU machine

modelport serves the demo chat model (``modelport.demo_chat``: a small GPT-2 trained at first use, then
cached) pinned to ``--cpus`` with one torch thread. Clients (asyncio + httpx, on core 0) ask it questions
about Python functions through streamed ``/v1/chat/completions`` requests (``stream: true``, greedy,
``max_tokens``, usage included) in a closed loop, ``N`` at a time, for ``--duration`` seconds after a
warm-up: once with the answers' natural lengths (the model ends them, after about 13 tokens), once with
``ignore_eos`` (every answer ``max_tokens`` long: decoding alone, as vLLM's serving benchmark measures
it). Prints, per concurrency: generated tokens/s in all, requests/s, time to first token p50/p99 and
time per output token p50; then the aggregate tokens/s of 8 streams over one stream's (target >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import KEY, Server

QUESTIONS = [
    "What does json.dumps do?",
    "What does os.path.join do?",
    "What is shutil.copytree for?",
    "Explain textwrap.wrap.",
    "What does the Zen of Python say about errors?",
    "What is a tuple?",
    "What does statistics.median do?",
    "Explain itertools.groupby.",
    "What does re.sub do?",
    "What is heapq.heappush for?",
    "Who are you?",
    "What does difflib.unified_diff do?",
]


async def one_stream(
    client: object, question: str, max_tokens: int, fixed: bool
) -> tuple[float | None, float, int]:
    """(time to first token, total time, tokens generated) of one streamed chat completion."""
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": fixed,
    }
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk.get("choices", [])):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return first, time.perf_counter() - start, tokens


async def point(url: str, streams: int, duration: float, warmup: float, max_tokens: int, fixed: bool) -> dict:
    import httpx

    ttft: list[float] = []
    per_token: list[float] = []
    tokens = requests = errors = 0
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:

        async def worker(i: int, until: float, record: bool) -> None:
            nonlocal tokens, requests, errors
            n = i
            while time.perf_counter() < until:
                try:
                    question = QUESTIONS[n % len(QUESTIONS)]
                    first, total, made = await one_stream(client, question, max_tokens, fixed)
                except RuntimeError:
                    errors += 1
                    continue
                n += streams
                if record:
                    requests += 1
                    tokens += made
                    if first is not None:
                        ttft.append(first)
                        if made > 1:
                            per_token.append((total - first) / (made - 1))

        now = time.perf_counter()
        await asyncio.gather(*(worker(i, now + warmup, False) for i in range(streams)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(i, start + duration, True) for i in range(streams)))
        elapsed = time.perf_counter() - start
    ttft.sort()
    return {
        "lengths": "fixed" if fixed else "natural",
        "streams": streams,
        "tokens_s": tokens / elapsed,
        "requests_s": requests / elapsed,
        "tokens_per_request": tokens / max(requests, 1),
        "ttft_p50_ms": 1000 * statistics.median(ttft) if ttft else None,
        "ttft_p99_ms": 1000 * ttft[int(0.99 * (len(ttft) - 1))] if ttft else None,
        "tpot_p50_ms": 1000 * statistics.median(per_token) if per_token else None,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--streams", default="1,8")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--lengths",
        default="natural,fixed",
        help="natural: answers end where the model ends them; fixed: ignore_eos, max_tokens each",
    )
    parser.add_argument("--cpus", default="1", help="cores for the server (taskset); empty for none")
    parser.add_argument("--device", default="cpu", help="the version's device: cpu or cuda")
    parser.add_argument("--port", type=int, default=18300)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    from modelport.demo_chat import chat_archive

    with tempfile.TemporaryDirectory() as tmp:
        artifact = chat_archive(Path(tmp))  # trained at first use, then from the cache
        server = Server(Path(tmp) / "data", args.port, args.cpus or None)
        try:
            server.deploy("chat", artifact)
            if args.device != "cpu":
                config = {"device": args.device}
                server.call("PATCH", "/api/v1/models/chat/versions/1/config", json.dumps(config).encode())
            points = [
                asyncio.run(point(server.url, int(n), args.duration, args.warmup, args.max_tokens, fixed))
                for fixed in [kind == "fixed" for kind in args.lengths.split(",")]
                for n in args.streams.split(",")
            ]
        finally:
            server.stop()
    ratios = {}
    for kind in args.lengths.split(","):
        rate = {p["streams"]: p["tokens_s"] for p in points if p["lengths"] == kind}
        if {1, 8} <= rate.keys():
            ratios[kind] = rate[8] / rate[1]
    if args.json:
        print(json.dumps({"device": args.device, "points": points, "ratio_8_over_1": ratios}))
        return
    where = f"{args.device}, server cores {args.cpus or 'all'}"
    print(f"demo chat model ({where}), max_tokens {args.max_tokens}")
    print("lengths  streams  tokens/s  req/s  tokens/req  TTFT p50  TTFT p99  TPOT p50  errors")
    for p in points:
        rates = f"{p['tokens_s']:>8.1f}  {p['requests_s']:>5.1f}  {p['tokens_per_request']:>10.1f}"
        times = f"{p['ttft_p50_ms']:>6.1f}ms  {p['ttft_p99_ms']:>6.1f}ms  {p['tpot_p50_ms']:>6.2f}ms"
        print(f"{p['lengths']:>7}  {p['streams']:>7}  {rates}  {times}  {p['errors']:>6}")
    for kind, ratio in ratios.items():
        print(f"{kind} lengths: 8 streams / 1 stream, tokens/s: {ratio:.2f}x (target >= 3)")


if __name__ == "__main__":
    main()
