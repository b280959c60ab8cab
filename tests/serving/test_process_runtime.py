"""A runtime that holds the GIL is served from a worker process of its own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from modelport.runtimes.process import ProcessRuntime
from modelport.server import build_app
from tests import fixtures
from tests.conftest import AUTH, make_services


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


async def test_gil_holding_runtime_runs_in_a_worker_process(tmp_path: Path) -> None:
    services = make_services(tmp_path / "d")
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH) as client:
        artifact = fixtures.FakeProcessRuntime.MAGIC + b'{"width": 2}'
        r = await client.post("/api/v1/models/slowpy/versions", content=artifact)
        assert r.status_code == 201 and r.json()["state"] == "ready", r.text

        def body(a: float) -> dict[str, object]:
            return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [a, 1.5]}]}

        answers = await asyncio.gather(
            *(client.post("/v2/models/slowpy/infer", json=body(i)) for i in range(6))
        )
        assert [a.json()["outputs"][0]["data"] for a in answers] == [[2.0 * i, 3.0] for i in range(6)]
        bad = await client.post("/v2/models/slowpy/infer", json=body(-1))
        assert bad.status_code == 400 and "negative" in bad.json()["error"]

        served = services.dataplane.cache.peek(("slowpy", 1))
        assert served is not None and isinstance(served.loaded.runtime, ProcessRuntime)
        pid = served.loaded.runtime.pid
        assert pid is not None and pid != os.getpid() and _alive(pid)
        services.dataplane.evict("slowpy")
        assert not _alive(pid)
    services.close()
