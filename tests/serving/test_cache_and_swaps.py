"""Model cache under a memory budget; zero-downtime promote/rollback under load; --workers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport.client import Client
from modelport.serving.memory import rss_bytes
from tests import fixtures
from tests.conftest import ADMIN_KEY, AUTH, RunningServer, make_services

MB = 1024 * 1024


def big_onnx(path: Path, megabytes: int, seed: int) -> Path:
    """y = x @ W with W of ``megabytes`` MB: a model whose memory is easy to see."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width = megabytes * MB // 4
    weights = np.random.default_rng(seed).standard_normal((1, width), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, path)
    return path


def test_lru_eviction_under_budget_releases_memory(tmp_path: Path) -> None:
    # onnxruntime holds about twice a model's weights, so two of these 120 MB models fit, not three
    services = make_services(tmp_path / "d", model_memory_budget=600 * MB)
    repo, cache = services.repository, services.dataplane.cache
    records = []
    for i, name in enumerate(("a", "b")):
        path = big_onnx(tmp_path / f"{name}.onnx", 120, i)
        records.append(repo.push_bytes(name, [path.read_bytes()], by="t"))
        path.unlink()
    assert all(r.state.value == "ready" for r in records)
    baseline = rss_bytes()
    cache.get(records[0])
    with_a = rss_bytes()
    assert with_a - baseline > 80 * MB  # the model really is in memory
    cache.get(records[1])
    assert cache.loaded_keys() == [("a", 1), ("b", 1)]
    cache.peek(("a", 1))  # a is now the most recently used
    third = repo.push_bytes("c", [big_onnx(tmp_path / "c.onnx", 120, 2).read_bytes()], by="t")
    cache.get(third)
    assert cache.loaded_keys() == [("a", 1), ("c", 1)]  # b, the least recently used, was evicted
    assert cache.used() <= 600 * MB
    before = rss_bytes()
    cache.evict("a")
    cache.evict("c")
    after = rss_bytes()
    assert before - after > 300 * MB, f"RSS only fell from {before / MB:.0f} to {after / MB:.0f} MB"
    services.close()


def test_version_over_budget_is_refused(tmp_path: Path) -> None:
    services = make_services(tmp_path / "d", model_memory_budget=10 * MB)
    record = services.repository.push_bytes(
        "big", [big_onnx(tmp_path / "b.onnx", 20, 0).read_bytes()], by="t"
    )
    from modelport.errors import NotReady

    with pytest.raises(NotReady, match="budget"):
        services.dataplane.cache.get(record)
    services.close()


Result = tuple[int, str | None, int]  # (status, version served, which client); status -1 marks a switch


async def _hammer(url: str, stop: float, results: list[Result], who: int) -> None:
    row = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3.0, 5.1, 1.8]}]}
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        while time.monotonic() < stop:
            try:
                r = await client.post("/v2/models/iris/infer", json=row)
                results.append((r.status_code, r.json().get("model_version"), who))
            except httpx.HTTPError as exc:
                results.append((0, type(exc).__name__, who))


def test_promote_and_rollback_under_load_drop_nothing(
    server: RunningServer, artifacts: dict[str, Path]
) -> None:
    with Client(server.url, ADMIN_KEY) as client:
        client.push("iris", artifacts["iris.skops"])
        client.push("iris", artifacts["iris.ubj"])
        client.promote("iris", 1)

        async def scenario() -> list[list[Result]]:
            results: list[Result] = []
            stop = time.monotonic() + 6
            load = [asyncio.create_task(_hammer(server.url, stop, results, who)) for who in range(16)]
            await asyncio.sleep(2)
            marks = [len(results)]
            await asyncio.to_thread(client.promote, "iris", 2)
            marks.append(len(results))
            await asyncio.sleep(2)
            marks.append(len(results))
            await asyncio.to_thread(client.rollback, "iris")
            marks.append(len(results))
            await asyncio.gather(*load)
            # answers that arrived while promote or rollback was under way could be either version
            return [results[: marks[0]], results[marks[1] : marks[2]], results[marks[3] :]]

        before, during, after = asyncio.run(scenario())
    everything = before + during + after
    assert all(status == 200 for status, _, _ in everything), [r for r in everything if r[0] != 200][:5]
    assert len(everything) > 200
    assert {version for _, version, _ in before} == {"1"}
    # each client had at most one request in flight at a switch, which may finish on the old version;
    # every later request of that client reaches the new one
    for phase, new in ((during, "2"), (after, "1")):
        for who in range(16):
            seq = [version for _, version, client_id in phase if client_id == who]
            assert len(seq) > 1 and set(seq[1:]) == {new} and seq[0] in ("1", "2"), (who, new, seq)


def test_workers_share_the_data_dir_and_follow_alias_moves(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    server = RunningServer(tmp_path / "data", args=("--workers", "2"))
    try:
        workers = _children(server.proc.pid)
        assert len(workers) >= 2, workers
        with Client(server.url, ADMIN_KEY) as client:
            client.push("iris", artifacts["iris.skops"])
            client.push("iris", artifacts["iris.ubj"])
            client.promote("iris", 1)
            x = {"input-0": fixtures.IRIS_X[:1]}
            asked = 20
            assert {client.infer("iris", x)[1] for _ in range(20)} == {"1"}
            client.promote("iris", 2)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the other worker follows at its next reconcile
                seen = {client.infer("iris", x)[1] for _ in range(20)}
                asked += 20
                if seen == {"2"}:
                    break
                time.sleep(0.2)
            assert seen == {"2"}
        # /metrics adds up the samples of every worker, whichever worker answers the scrape
        for _ in range(4):
            text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith('modelport_inference_requests_total{model="iris"')
            )
            assert counted == asked
        # a revocation made through one worker applies to the next management call on any worker
        with Client(server.url, ADMIN_KEY) as client:
            secret = client.create_key("temp", ["read"])["key"]
            temp = {"Authorization": f"Bearer {secret}"}
            assert {
                httpx.get(f"{server.url}/api/v1/models", headers=temp).status_code for _ in range(10)
            } == {200}
            client.revoke_key("temp")
            assert {
                httpx.get(f"{server.url}/api/v1/models", headers=temp).status_code for _ in range(10)
            } == {401}
    finally:
        server.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out
