"""The real ``openai`` Python client against a real modelport server on 127.0.0.1: embeddings (base64, the
client's default, and float) equal to V2's, chat and text completions whole and streamed, errors raised as
the client's own exception types, continuous batching that changes no answer, and a client that goes
away mid-stream freeing its sequence's slot at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from modelport.client import Client
from tests.api.test_openai import endless_lm
from tests.conftest import ADMIN_KEY, AUTH, RunningServer
from tests.runtimes import textmodels

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")

CHAT = [{"role": "system", "content": "answer briefly"}, {"role": "user", "content": "what is a fox?"}]
LONG = 4000  # tokens the slow model could make for one request


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    d = tmp_path_factory.mktemp("openai-client")
    writer = endless_lm(d / "writer" / "model")
    slow = endless_lm(d / "slow" / "model", positions=LONG + 96, width=256, layers=4)
    server = RunningServer(d / "data")
    try:
        with Client(server.url, ADMIN_KEY) as client:
            client.push("minilm", textmodels.minilm())
            client.push("writer", writer)
            client.push("slow", slow, runtime={"max_sequences": 1})  # one sequence at a time
            client.create_key("reader", ["read"])
            client.create_key("minilm-only", ["infer"], models="minilm")
        yield server
    finally:
        server.stop()


def connect(server: RunningServer, key: str = ADMIN_KEY) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def test_embeddings_base64_and_float_equal_v2(deployed: RunningServer) -> None:
    client = connect(deployed)
    texts = ["A man is eating food.", "modelport serves sentence embeddings", "a"]
    raw = client.embeddings.with_raw_response.create(model="minilm", input=texts)  # base64, decoded
    assert raw.headers["x-model-version"] == "1"
    default = raw.parse()
    floats = client.embeddings.create(model="minilm:1", input=texts, encoding_format="float")
    a = np.array([e.embedding for e in default.data], dtype=np.float32)
    b = np.array([e.embedding for e in floats.data], dtype=np.float32)
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, atol=1e-6)
    v2 = httpx.post(
        f"{deployed.url}/v2/models/minilm/infer",
        json={"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": texts}]},
        headers=AUTH,
        timeout=60,
    )
    (out,) = v2.json()["outputs"]
    np.testing.assert_allclose(a, np.array(out["data"], dtype=np.float32).reshape(3, 384), atol=1e-6)
    assert default.model == floats.model == "minilm:1"
    assert default.usage.prompt_tokens == default.usage.total_tokens > 0
    one = client.embeddings.create(model="minilm", input="a")
    assert len(one.data) == 1 and np.allclose(one.data[0].embedding, a[2], atol=1e-6)


def test_chat_streamed_is_the_whole_answer(deployed: RunningServer) -> None:
    client = connect(deployed)
    ask: dict[str, Any] = {"model": "writer", "messages": CHAT, "temperature": 0, "max_tokens": 24}
    raw = client.chat.completions.with_raw_response.create(**ask)
    assert raw.headers["x-model-version"] == "1"
    whole = raw.parse()
    assert whole.model == "writer:1" and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 24
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 24
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert {c.model for c in chunks} == {"writer:1"}

    sampled = {**ask, "temperature": 1, "seed": 1234}
    first, second = (client.chat.completions.create(**sampled).choices[0].message.content for _ in range(2))
    assert first == second  # the same seed, the same text

    content = whole.choices[0].message.content
    start = next(i for i in range(3, len(content) - 2) if "\ufffd" not in content[i : i + 2])
    stop = content[start : start + 2]
    cut = client.chat.completions.create(**ask, stop=[stop])
    assert cut.choices[0].message.content == content[: content.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_completions_streamed_is_the_whole_answer(deployed: RunningServer) -> None:
    client = connect(deployed)
    ask: dict[str, Any] = {
        "model": "writer",
        "prompt": "the quick brown fox",
        "temperature": 0,
        "max_tokens": 24,
    }
    whole = client.completions.create(**ask)
    assert whole.object == "text_completion" and whole.model == "writer:1"
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 24
    chunks = list(client.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage == whole.usage


def test_errors_are_the_client_exceptions(deployed: RunningServer) -> None:
    client = connect(deployed)
    chat: dict[str, Any] = {"model": "writer", "messages": CHAT, "max_tokens": 4}
    with pytest.raises(openai.AuthenticationError) as denied:
        connect(deployed, "mp_wrong").chat.completions.create(**chat)
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(**{**chat, "model": "ghost"})
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="minilm:7", input="x")
    for bad, param in (({"n": 2}, "n"), ({"messages": []}, "messages"), ({"model": "minilm"}, "model")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(**{**chat, **bad})
        assert refused.value.param == param and refused.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="writer", input="x")

    with Client(deployed.url, ADMIN_KEY) as admin:
        reader = admin.create_key("reader-2", ["read"])["key"]
        limited = admin.create_key("minilm-only-2", ["infer"], models="minilm")["key"]
        rated = admin.create_key("once", ["infer"], rate_limit=0.01)["key"]
    with pytest.raises(openai.PermissionDeniedError):  # a key without the infer scope
        connect(deployed, reader).chat.completions.create(**chat)
    assert [m.id for m in connect(deployed, limited).models.list()] == ["minilm"]
    with pytest.raises(openai.NotFoundError):  # as on V2: models beyond a key's limits do not exist for it
        connect(deployed, limited).chat.completions.create(**chat)
    connect(deployed, rated).embeddings.create(model="minilm", input="x")
    with pytest.raises(openai.RateLimitError) as limited_rate:
        connect(deployed, rated).embeddings.create(model="minilm", input="x")
    assert int(limited_rate.value.response.headers["retry-after"]) >= 1


def test_models_listed(deployed: RunningServer) -> None:
    models = {m.id: m for m in connect(deployed).models.list()}
    assert set(models) == {"minilm", "writer", "slow"}
    assert models["minilm"].owned_by == "modelport" and models["minilm"].created > 0
    assert connect(deployed).models.retrieve("writer").id == "writer"


async def test_continuous_batching_changes_no_answer(deployed: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{deployed.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=60)
    prompts = [f"{i}: {text}" for i, text in enumerate(textmodels.sentences(8, longest=12))]
    ask: dict[str, Any] = {"model": "writer", "temperature": 0, "max_tokens": 48}

    async def alone(prompt: str) -> str:
        answer = await client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **ask)
        assert answer.usage is not None and answer.usage.completion_tokens == 48
        return str(answer.choices[0].message.content)

    async def streamed(prompt: str) -> tuple[str, float, float]:
        stream = await client.chat.completions.create(
            messages=[{"role": "user", "content": prompt}], stream=True, **ask
        )
        parts, times = [], []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                times.append(time.perf_counter())
        return "".join(parts), times[0], times[-1]

    expected = [await alone(p) for p in prompts]  # one at a time
    together = await asyncio.gather(*(streamed(p) for p in prompts))
    await client.close()
    assert [text for text, _, _ in together] == expected
    assert len(set(expected)) == len(expected)
    assert max(first for _, first, _ in together) < min(last for _, _, last in together)  # all at once


def metric(server: RunningServer, name: str, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text
    prefix = f'{name}{{model="{model}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_client_that_goes_away_frees_its_slot(deployed: RunningServer) -> None:
    client = connect(deployed)
    ask: dict[str, Any] = {"model": "slow", "prompt": "hello", "temperature": 0}
    client.completions.create(**ask, max_tokens=1)  # loaded
    started = time.perf_counter()
    client.completions.create(**ask, max_tokens=200)  # how fast it is
    per_token = (time.perf_counter() - started) / 200
    made = metric(deployed, "modelport_completion_tokens_total", "slow")

    with client.completions.create(**ask, max_tokens=LONG, stream=True) as stream:
        for received, _ in enumerate(stream):
            if received == 1:
                break  # the connection closes here
    left = time.perf_counter()
    quick = client.completions.create(**ask, max_tokens=4)
    waited = time.perf_counter() - left
    assert quick.usage.completion_tokens == 4
    # with one slot, the long stream's remaining tokens would have taken at least this long
    assert waited < max(1.0, LONG * per_token / 4), (waited, per_token)
    gone = metric(deployed, "modelport_completion_tokens_total", "slow") - made - 4
    assert 0 < gone < LONG / 4  # it was reported when it ended, with the tokens it had made
    assert metric(deployed, "modelport_generation_sequences", "slow") == 0

    # a client that gives up waiting for a whole (not streamed) answer frees the slot as well
    impatient = openai.OpenAI(base_url=f"{deployed.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(**ask, max_tokens=LONG)
    left = time.perf_counter()
    assert client.completions.create(**ask, max_tokens=4).usage.completion_tokens == 4
    assert time.perf_counter() - left < max(1.0, LONG * per_token / 4)


def test_token_metrics(deployed: RunningServer) -> None:
    for model in ("writer", "slow"):
        assert metric(deployed, "modelport_prompt_tokens_total", model) > 0
        assert metric(deployed, "modelport_completion_tokens_total", model) > 0
        assert metric(deployed, "modelport_time_to_first_token_seconds_count", model) > 0
    assert metric(deployed, "modelport_prompt_tokens_total", "minilm") > 0
