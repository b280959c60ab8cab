"""The SDK: ``Client`` against a real server, ``AsyncClient`` in process, and both answering alike."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelport import AsyncClient, Client
from modelport.client import ConnectionFailed
from modelport.client.calls import error_from
from modelport.errors import (
    ConfigError,
    Forbidden,
    InvalidInput,
    InvalidName,
    ModelportError,
    NotFound,
    Overloaded,
    RateLimited,
    Unauthenticated,
)
from modelport.server import Services, build_app
from tests import fixtures
from tests.conftest import ADMIN_KEY, RunningServer, free_port

Step = tuple[str, tuple[Any, ...], dict[str, Any]]
X = fixtures.IRIS_X[:3]


def step(method: str, *args: Any, **kwargs: Any) -> Step:
    return method, args, kwargs


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A real ``modelport serve``, started once for the module: the sync client's network is real."""
    server = RunningServer(tmp_path_factory.mktemp("sdk") / "data")
    try:
        with Client(server.url, ADMIN_KEY) as sdk:
            yield sdk
    finally:
        server.stop()


def in_process(services: Services, api_key: str) -> AsyncClient:
    transport = httpx.ASGITransport(app=build_app(services))  # type: ignore[arg-type]
    return AsyncClient("http://testserver", api_key, transport=transport)


@pytest.fixture
async def aclient(services: Services) -> AsyncIterator[AsyncClient]:
    async with in_process(services, ADMIN_KEY) as sdk:
        yield sdk


def plain(value: Any) -> Any:
    """A result without what differs between two servers (times), arrays as lists, comparable with ==."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.endswith("_at") and k != "at"}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value.tolist() if isinstance(value, np.ndarray) else value


def failure(exc: ModelportError) -> tuple[type[ModelportError], int | None, str]:
    return type(exc), exc.status_code, exc.message


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return plain(call())
    except ModelportError as exc:
        return failure(exc)


def run_sync(sdk: Client, steps: dict[str, Step]) -> dict[str, Any]:
    return {
        label: outcome(functools.partial(getattr(sdk, m), *a, **kw)) for label, (m, a, kw) in steps.items()
    }


async def run_async(sdk: AsyncClient, steps: dict[str, Step]) -> dict[str, Any]:
    return {label: await _async_outcome(getattr(sdk, m)(*a, **kw)) for label, (m, a, kw) in steps.items()}


async def _async_outcome(pending: Any) -> Any:
    try:
        return plain(await pending)
    except ModelportError as exc:
        return failure(exc)


def lifecycle(artifacts: dict[str, Path], progress: Callable[[int], None]) -> dict[str, Step]:
    iris, x = artifacts["iris.skops"], {"input-0": X}
    return {
        "push": step("push", "iris-sdk", iris, progress=progress),
        "push xgboost": step("push", "iris-sdk", str(artifacts["iris.json"]), framework="xgboost"),
        "promote 1": step("promote", "iris-sdk", 1),
        "infer at 1": step("infer", "iris-sdk", x),
        "promote 2": step("promote", "iris-sdk", 2),
        "infer at 2": step("infer", "iris-sdk", x),
        "rollback": step("rollback", "iris-sdk"),
        "infer after rollback": step("infer", "iris-sdk", x),
        "infer version 2": step("infer", "iris-sdk", x, version=2),
        "aliases": step("list_aliases", "iris-sdk"),
        "metadata": step("metadata", "iris-sdk", "production"),
        "unknown model": step("get_model", "ghost"),
        "infer unknown model": step("infer", "ghost", x),
        "infer wrong shape": step("infer", "iris-sdk", {"input-0": X[:, :2]}),
        "push bad name": step("push", "Not A Name", iris),
        "delete version 2": step("delete_version", "iris-sdk", 2),
        "versions": step("list_versions", "iris-sdk"),
    }


async def test_lifecycle_and_errors_sync_and_async_alike(
    client: Client, aclient: AsyncClient, artifacts: dict[str, Path]
) -> None:
    sent: list[int] = []
    r = run_sync(client, lifecycle(artifacts, sent.append))

    assert sum(sent) == artifacts["iris.skops"].stat().st_size  # progress saw every byte
    assert (r["push"]["version"], r["push"]["state"], r["push xgboost"]["framework"]) == (
        1,
        "ready",
        "xgboost",
    )
    assert r["promote 1"]["alias"] == "production" and r["promote 1"]["version"] == 1
    served = [r[k][1] for k in ("infer at 1", "infer at 2", "infer after rollback", "infer version 2")]
    assert served == ["1", "2", "1", "2"]  # each answer says which version served it
    assert r["infer at 1"][0]["predict"] == fixtures.iris_forest().predict(X).tolist()
    assert r["rollback"]["version"] == 1 and r["aliases"][0]["version"] == 1
    assert r["metadata"]["inputs"][0]["name"] == "input-0"
    assert r["unknown model"][:2] == (NotFound, 404)  # management answers carry a code
    assert r["infer unknown model"][:2] == (NotFound, 404)  # V2 answers do not: the status picks the class
    assert r["infer wrong shape"][:2] == (InvalidInput, 400)
    assert r["push bad name"][:2] == (InvalidName, 400)
    assert r["delete version 2"] is None and [v["version"] for v in r["versions"]] == [1]

    async_sent: list[int] = []
    assert await run_async(aclient, lifecycle(artifacts, async_sent.append)) == r
    assert async_sent == sent


def auth_steps() -> dict[str, Step]:
    return {
        "read": step("get_model", "ghost"),
        "admin": step("list_keys"),
        "infer": step("infer", "ghost", {"input-0": X}),
    }


async def test_auth_errors_sync_and_async_alike(
    client: Client, aclient: AsyncClient, services: Services
) -> None:
    reader = client.create_key("reader", ["read"])["key"]
    with Client(client.url, "mp_not-a-key") as stranger, Client(client.url, reader) as reading:
        unknown, limited = run_sync(stranger, auth_steps()), run_sync(reading, auth_steps())
    assert {label: r[:2] for label, r in unknown.items()} == dict.fromkeys(
        auth_steps(), (Unauthenticated, 401)
    )
    assert {label: r[:2] for label, r in limited.items()} == {
        "read": (NotFound, 404),  # the key works where its scope reaches
        "admin": (Forbidden, 403),
        "infer": (Forbidden, 403),
    }

    async_reader = (await aclient.create_key("reader", ["read"]))["key"]
    async with (
        in_process(services, "mp_not-a-key") as stranger,
        in_process(services, async_reader) as reading,
    ):
        assert (await run_async(stranger, auth_steps()), await run_async(reading, auth_steps())) == (
            unknown,
            limited,
        )


def test_error_responses_map_to_the_error_tree() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v2"):
            return httpx.Response(503, json={"error": "queue full"}, headers={"Retry-After": "2"})
        return httpx.Response(429, json={"error": {"code": "rate_limited", "message": "slow down"}})

    with Client("http://mocked", "k", transport=httpx.MockTransport(answer)) as sdk:
        with pytest.raises(RateLimited) as limited:
            sdk.list_keys()
        with pytest.raises(Overloaded) as overloaded:
            sdk.infer("m", {"x": [1.0]})
    assert (limited.value.status_code, limited.value.message) == (429, "slow down")
    assert (overloaded.value.status_code, overloaded.value.retry_after) == (503, 2.0)

    bare = error_from(httpx.Response(502, text="bad gateway"))
    assert type(bare) is ModelportError and (bare.status_code, bare.message) == (502, "bad gateway")
    coded = error_from(
        httpx.Response(400, json={"error": {"code": "invalid_name", "message": "m", "field": "f"}})
    )
    assert type(coded) is InvalidName and (coded.status_code, coded.field) == (400, "f")


def test_importing_modelport_does_not_load_the_sdk() -> None:
    code = (
        "import sys, modelport; assert not {'httpx', 'numpy'} & set(sys.modules), 'loaded'; "
        "from modelport import AsyncClient, Client; print(Client.__name__, AsyncClient.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Client", "AsyncClient"]


def managing(artifacts: dict[str, Path], model_dir: Path) -> dict[str, Step]:
    iris = artifacts["iris.skops"]
    return {
        "create": step("create_model", "tulips", "tulips, by the SDK"),
        "push batched": step("push", "tulips", iris, max_batch_size=4, max_delay_ms=0),
        "config": step("version_config", "tulips", 1),
        "configure": step("configure_version", "tulips", 1, max_queue=16),
        "config after": step("version_config", "tulips", 1),
        "push placed": step("push", "tulips", iris, device="cpu", dtype="float16", max_batch_tokens=512),
        "place": step("configure_version", "tulips", 2, device="auto"),
        "sklearn reads no runtime settings": step(
            "configure_version", "tulips", 2, runtime={"normalize": True}
        ),
        "push on tpu": step("push", "tulips", iris, device="tpu"),
        "push same bytes": step("push", "tulips", iris),
        "push directory": step("push", "tulips", model_dir),
        "push directory again": step("push", "tulips", model_dir),
        "stage 4": step("promote", "tulips", 4, alias="staging"),
        "promote staging": step("promote", "tulips", "staging"),
        "promote digits": step("promote", "tulips", "2", alias="canary"),
        "aliases": step("list_aliases", "tulips"),
        "unalias": step("delete_alias", "tulips", "canary"),
        "aliases after": step("list_aliases", "tulips"),
        "promote unknown alias": step("promote", "tulips", "nightly"),
        "load": step("load_model", "tulips"),
        "unload": step("unload_model", "tulips"),
        "zero rate limit": step("create_key", "no-limit", ["read"], rate_limit=0),
    }


async def test_management_calls_sync_and_async_alike(
    client: Client, aclient: AsyncClient, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    model_dir = tmp_path / "tulips"
    (model_dir / "weights").mkdir(parents=True)
    (model_dir / "weights" / "model.skops").write_bytes(artifacts["iris.skops"].read_bytes())
    r = run_sync(client, managing(artifacts, model_dir))

    assert r["create"]["description"] == "tulips, by the SDK"
    assert r["push batched"]["config"] == {"batching": {"max_batch_size": 4, "max_delay_ms": 0}}
    assert r["config"] == {"batching": {"max_batch_size": 4, "max_delay_ms": 0}}  # 0 is sent, not dropped
    assert (
        r["configure"]["config"]
        == r["config after"]
        == {"batching": {"max_batch_size": 4, "max_delay_ms": 0, "max_queue": 16}}
    )
    assert r["push placed"]["config"] == {
        "batching": {"max_batch_tokens": 512},
        "device": "cpu",
        "dtype": "float16",
    }
    assert r["place"]["config"] == {
        "batching": {"max_batch_tokens": 512},
        "device": "auto",
        "dtype": "float16",
    }
    assert r["sklearn reads no runtime settings"][:2] == (InvalidInput, 400)
    assert r["push on tpu"][:2] == (InvalidInput, 400)
    assert r["push batched"]["same_sha256_as"] == [] and r["push same bytes"]["same_sha256_as"] == [1, 2]
    assert r["push directory"]["state"] == "ready"
    assert [f["path"] for f in r["push directory"]["files"]] == ["weights/model.skops"]
    assert r["push directory again"]["same_sha256_as"] == [4]  # packed alike: the same bytes
    assert (r["promote staging"]["alias"], r["promote staging"]["version"]) == ("production", 4)
    assert r["promote digits"]["version"] == 2  # "2" is a version number, not an alias named "2"
    assert {a["alias"]: a["version"] for a in r["aliases"]} == {"production": 4, "staging": 4, "canary": 2}
    assert r["unalias"] is None and {a["alias"] for a in r["aliases after"]} == {"production", "staging"}
    assert r["promote unknown alias"][:2] == (NotFound, 404)
    assert r["load"] is None and r["unload"] is None
    assert r["zero rate limit"][:2] == (InvalidInput, 400)  # refused, not an unlimited key

    assert await run_async(aclient, managing(artifacts, model_dir)) == r
    sync_events = client.audit(model="tulips", limit=3)
    async_events = await aclient.audit(model="tulips", limit=3)
    targets = [e["target"] for e in sync_events]
    # newest first: unload, load (of the version production names), unalias
    assert targets == [e["target"] for e in async_events] == ["tulips", "tulips/4", "tulips@canary"]
    older = client.audit(model="tulips", before=min(e["id"] for e in sync_events))
    assert older and all(e["id"] < sync_events[-1]["id"] for e in older)
    assert all(e["target"].startswith("tulips") for e in older)


def test_requests_carry_what_was_given() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    with Client("http://mocked", "k", transport=httpx.MockTransport(answer)) as sdk:
        sdk.create_key("k", ["read"], rate_limit=0, models=None)
        sdk.revoke_key("admin", force=True)
        sdk.revoke_key("other")
        sdk.configure_version("m", 1, max_delay_ms=0)
        with pytest.raises(InvalidInput, match="NaN or infinity"):
            sdk.infer("m", {"x": np.array([1.0, np.nan])})  # JSON has no NaN: refused before sending
    create, forced, plain_revoke, patch = sent
    assert json.loads(create.content) == {"name": "k", "scopes": ["read"], "rate_limit": 0}
    assert (forced.method, forced.url.params.get("force")) == ("DELETE", "true")
    assert "force" not in plain_revoke.url.params
    assert (patch.method, json.loads(patch.content)) == ("PATCH", {"batching": {"max_delay_ms": 0}})


async def test_no_answer_is_a_typed_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, "k") as sdk, pytest.raises(ConnectionFailed) as failed:
        sdk.list_models()
    async with AsyncClient(url, "k") as asdk:
        with pytest.raises(ConnectionFailed) as afailed:
            await asdk.list_models()
    for exc in (failed.value, afailed.value):
        assert exc.url == url and url in exc.message and exc.status_code is None
    with pytest.raises(ConfigError, match="http://localhost:8080"):
        Client("localhost:8080")
    with pytest.raises(ConfigError, match=r"no-such-ca\.pem"):
        Client(url, verify="no-such-ca.pem")
