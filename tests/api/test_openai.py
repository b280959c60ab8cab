"""The OpenAI-compatible surface in process: models listed by what they do, embeddings (float, base64,
fewer dimensions), chat and text completions whole and streamed (the SSE frames OpenAI sends), parameters
that would change the answer refused by name, errors in OpenAI's shape, each request reported to the
observers, and a timeout that answers 504 and frees the sequence's slot at once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio

from modelport.server import Services, build_app
from modelport.serving.observers import InferenceEvent
from tests import fixtures
from tests.conftest import ADMIN_KEY, AUTH, make_services
from tests.runtimes import textmodels

pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.asyncio(loop_scope="module")  # one server for the module, on one loop

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]


def endless_lm(folder: Path, positions: int = 1024, width: int = 64, layers: int = 1) -> Path:
    """A GPT-2 with random weights and no end token: it stops only at its length, so a request for N
    tokens gets N (and a long one takes long)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(textmodels.CORPUS, trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=positions)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    return textmodels._quiet_save(GPT2LMHeadModel(config).eval(), tokenizer, folder)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("openai")
    bert = textmodels.bert_classifier(d / "bert" / "model")
    tiny = textmodels.sentence_transformer(d / "tiny" / "model", bert)
    writer = endless_lm(d / "writer" / "model")
    return {
        "writer": writer,
        "writer.tar": textmodels.tar_dir(writer, d / "writer.tar", top=None),
        "long.tar": textmodels.tar_dir(endless_lm(d / "long" / "model", 4096), d / "long.tar", top=None),
        "tiny": tiny,
        "tiny.tar": textmodels.tar_dir(tiny, d / "tiny.tar"),
        "iris.skops": fixtures.write_skops(fixtures.iris_forest(), d / "iris.skops"),
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[InferenceEvent] = []

    def observe(self, event: InferenceEvent) -> None:
        self.events.append(event)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(
    tmp_path_factory: pytest.TempPathFactory, built: dict[str, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    services = make_services(tmp_path_factory.mktemp("openai-server") / "data")
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH, timeout=60) as c:
        c.services = services  # type: ignore[attr-defined]
        for name, artifact, runtime in (
            ("writer", "writer.tar", None),
            ("tiny", "tiny.tar", {"matryoshka": True}),
            ("iris", "iris.skops", None),
        ):
            await push(c, name, built[artifact], runtime)
        yield c
    services.close()


async def push(c: httpx.AsyncClient, name: str, artifact: Path, runtime: dict[str, Any] | None) -> None:
    params = {"filename": artifact.name, **({"runtime": json.dumps(runtime)} if runtime else {})}
    r = await c.post(f"/api/v1/models/{name}/versions", content=artifact.read_bytes(), params=params)
    assert r.status_code == 201, r.text


def services_of(c: httpx.AsyncClient) -> Services:
    return c.services  # type: ignore[attr-defined,no-any-return]


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


def sse(r: httpx.Response) -> list[Any]:
    """The events of a streamed answer (``[DONE]`` as the string)."""
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    frames = r.text.split("\n\n")
    assert frames[-1] == "", frames[-1]
    assert all(f.startswith("data: ") for f in frames[:-1]), frames
    return [f[6:] if f == "data: [DONE]" else json.loads(f[6:]) for f in frames[:-1]]


async def key(c: httpx.AsyncClient, name: str, scopes: list[str], **options: Any) -> dict[str, str]:
    r = await c.post("/api/v1/keys", json={"name": name, "scopes": scopes, **options})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


# ---- models -------------------------------------------------------------------------------------------
async def test_models_are_listed_by_what_they_do(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    cards = {card["id"]: card for card in listed["data"]}
    assert set(cards) == {"writer", "tiny"}  # iris neither embeds nor generates
    assert cards["writer"]["capabilities"] == ["chat"] and cards["tiny"]["capabilities"] == ["embeddings"]
    created = (await client.get("/api/v1/models/tiny")).json()["created_at"]
    from datetime import datetime

    assert cards["tiny"]["created"] == int(datetime.fromisoformat(created).timestamp())
    assert {c["object"] for c in cards.values()} == {"model"} and cards["tiny"]["owned_by"] == "modelport"
    one = await client.get("/v1/models/tiny:1")
    assert one.status_code == 200 and one.json()["id"] == "tiny:1" and one.json()["version"] == 1
    assert error_of(await client.get("/v1/models/iris"), 404)["code"] == "model_not_found"
    assert error_of(await client.get("/v1/models/ghost"), 404) == {
        "message": "model 'ghost' not found",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert error_of(await client.get("/v1/models/tiny:7"), 404)["code"] == "model_not_found"
    limited = await key(client, "writer-only", ["infer"], models="writer")
    seen = (await client.get("/v1/models", headers=limited)).json()["data"]
    assert [card["id"] for card in seen] == ["writer"]
    assert (await client.get("/v1/models/tiny", headers=limited)).status_code == 404


# ---- embeddings ---------------------------------------------------------------------------------------
async def test_embeddings_as_floats_or_base64_and_fewer_dimensions(client: httpx.AsyncClient) -> None:
    texts = ["hello world", "the quick brown fox jumps over the lazy dog"]
    r = await client.post(
        "/v1/embeddings", json={"model": "tiny", "input": texts, "encoding_format": "float"}
    )
    assert r.status_code == 200 and r.headers["x-model-version"] == "1", r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "tiny:1"
    floats = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1] and floats.shape == (2, 32)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    v2 = await client.post(
        "/v2/models/tiny/infer",
        json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]},
    )
    np.testing.assert_allclose(floats, np.array(v2.json()["outputs"][0]["data"]).reshape(2, 32), atol=1e-6)

    encoded = await client.post(
        "/v1/embeddings", json={"model": "tiny:1", "input": texts[0] + "", "encoding_format": "base64"}
    )
    decoded = np.frombuffer(base64.b64decode(encoded.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats[0], atol=1e-6)

    cut = await client.post("/v1/embeddings", json={"model": "tiny", "input": texts, "dimensions": 8})
    short = np.array([d["embedding"] for d in cut.json()["data"]])
    expected = floats[:, :8] / np.linalg.norm(floats[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)
    too_many = await client.post("/v1/embeddings", json={"model": "tiny", "input": "x", "dimensions": 33})
    assert error_of(too_many, 400)["param"] == "dimensions"


async def test_token_ids_embed_as_their_text(client: httpx.AsyncClient, built: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built["tiny"])
    texts = ["hello world", "the quick brown fox"]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    as_text = (await client.post("/v1/embeddings", json={"model": "tiny", "input": texts})).json()
    for given, rows in ((ids, [0, 1]), (ids[1], [1])):  # a list of such lists, or one list of ids
        r = await client.post("/v1/embeddings", json={"model": "tiny", "input": given})
        assert r.status_code == 200, r.text
        got = [d["embedding"] for d in r.json()["data"]]
        np.testing.assert_allclose(got, [as_text["data"][i]["embedding"] for i in rows], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"input": [1, 2, 10**6]}, "input", "token ids must be from 0 to"),
        ({"input": [[1, 2], []]}, "input", "empty list of token ids"),
        ({"input": ["x", 3]}, "input", "a list of token ids or a list of such lists"),
        ({"input": []}, "input", "must not be empty"),
        ({"input": ""}, "input", "empty string"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"input": "x", "model": "writer"}, "model", "not an embedding model"),
        ({"input": "x", "model": "iris"}, "model", "not an embedding model"),
    ],
)
async def test_embedding_requests_refused(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, needle: str
) -> None:
    error = error_of(await client.post("/v1/embeddings", json={"model": "tiny", **body}), 400)
    assert error["param"] == param and needle in error["message"], error
    assert error["type"] == "invalid_request_error"


async def test_fewer_dimensions_only_where_the_version_allows(
    client: httpx.AsyncClient, built: dict[str, Path]
) -> None:
    await push(client, "plain", built["tiny.tar"], None)
    r = await client.post("/v1/embeddings", json={"model": "plain", "input": "x", "dimensions": 8})
    assert "does not allow fewer dimensions" in error_of(r, 400)["message"]
    full = await client.post("/v1/embeddings", json={"model": "plain", "input": "x", "dimensions": 32})
    assert full.status_code == 200  # its own width is no change


# ---- generation -------------------------------------------------------------------------------------
async def test_chat_whole_and_streamed_say_the_same(client: httpx.AsyncClient) -> None:
    ask = {
        "model": "writer",
        "messages": CHAT,
        "temperature": 0,
        "max_completion_tokens": 12,
        "max_tokens": 3,
    }
    whole = await client.post("/v1/chat/completions", json=ask)
    assert whole.status_code == 200 and whole.headers["x-model-version"] == "1", whole.text
    body = whole.json()
    assert body["object"] == "chat.completion" and body["model"] == "writer:1"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 12 and usage["total_tokens"] == usage["prompt_tokens"] + 12

    streamed = await client.post(
        "/v1/chat/completions", json={**ask, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert streamed.headers["x-model-version"] == "1"
    events = sse(streamed)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage
    assert all(c["usage"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == choice["message"]["content"] and text

    plain = sse(await client.post("/v1/chat/completions", json={**ask, "stream": True}))
    assert all("usage" not in c for c in plain[:-1]) and plain[-2]["choices"][0]["finish_reason"] == "length"


async def test_text_completions_of_several_prompts_and_token_ids(
    client: httpx.AsyncClient, built: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(built["writer"])("the quick brown fox")["input_ids"]
    ask = {"model": "writer", "temperature": 0, "max_tokens": 10}
    prompts = ["hello world", "the quick brown fox"]
    whole = await client.post("/v1/completions", json={**ask, "prompt": prompts})
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["object"] == "text_completion" and body["model"] == "writer:1", body
    texts = [c["text"] for c in body["choices"]]
    assert [c["index"] for c in body["choices"]] == [0, 1] and texts[0] != texts[1]
    assert body["usage"]["completion_tokens"] == 20
    for given in (ids, [ids]):  # token ids, alone or in a list: the same prompt
        by_ids = await client.post("/v1/completions", json={**ask, "prompt": given})
        assert [c["text"] for c in by_ids.json()["choices"]] == [texts[1]]
    mixed = await client.post("/v1/completions", json={**ask, "prompt": ["hi", ids]})
    assert "a list of token ids" in error_of(mixed, 400)["message"]
    alone = await client.post("/v1/completions", json={**ask, "prompt": "hello world"})
    assert alone.json()["choices"][0]["text"] == texts[0]
    default = await client.post("/v1/completions", json={"model": "writer", "prompt": "hi", "temperature": 0})
    assert default.json()["usage"]["completion_tokens"] == 256  # the version's max_new_tokens

    events = sse(await client.post("/v1/completions", json={**ask, "prompt": prompts, "stream": True}))
    assert events[-1] == "[DONE]" and {e["object"] for e in events[:-1]} == {"text_completion"}
    joined = ["", ""]
    ends = {}
    for e in events[:-1]:
        (choice,) = e["choices"]
        joined[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            ends[choice["index"]] = choice["finish_reason"]
    assert joined == texts and ends == {0: "length", 1: "length"}


async def test_sampling_options(client: httpx.AsyncClient) -> None:
    ask = {"model": "writer", "messages": CHAT, "max_tokens": 16}
    seeded = [
        (await client.post("/v1/chat/completions", json={**ask, "seed": 7, "temperature": 1})).json()
        for _ in range(2)
    ]
    assert seeded[0]["choices"][0]["message"] == seeded[1]["choices"][0]["message"]
    greedy = (await client.post("/v1/chat/completions", json={**ask, "temperature": 0})).json()
    text = greedy["choices"][0]["message"]["content"]
    stop = text[4:6]
    cut = (await client.post("/v1/chat/completions", json={**ask, "temperature": 0, "stop": [stop]})).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    parts = {
        "role": "user",
        "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}],
    }
    joined = {"role": "user", "content": "hello\nworld"}
    answers = [
        (await client.post("/v1/chat/completions", json={**ask, "temperature": 0, "messages": [m]})).json()
        for m in (parts, joined)
    ]
    assert answers[0]["choices"] == answers[1]["choices"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"seed": 2**70}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages.0.content"),
        ({"model": "tiny"}, "model"),
    ],
)
async def test_chat_parameters_refused_by_name(
    client: httpx.AsyncClient, extra: dict[str, Any], param: str
) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "writer", "messages": CHAT, **extra})
    error = error_of(r, 400)
    assert error["param"] == param and error["type"] == "invalid_request_error", error


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"echo": True}, "echo"),
        ({"best_of": 2}, "best_of"),
        ({"suffix": "end"}, "suffix"),
        ({"logprobs": 1}, "logprobs"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [[1], [-1]]}, "prompt"),
    ],
)
async def test_completion_parameters_refused_by_name(
    client: httpx.AsyncClient, extra: dict[str, Any], param: str
) -> None:
    r = await client.post("/v1/completions", json={"model": "writer", "prompt": "hi", **extra})
    assert error_of(r, 400)["param"] == param


async def test_harmless_parameters_are_accepted(client: httpx.AsyncClient) -> None:
    harmless = {
        "user": "someone",
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "logprobs": False,
        "response_format": {"type": "text"},
        "tool_choice": "none",
        "store": False,
        "metadata": {"a": "b"},
    }
    ask = {"model": "writer", "messages": CHAT, "max_tokens": 2, "temperature": 0}
    r = await client.post("/v1/chat/completions", json={**ask, **harmless})
    assert r.status_code == 200, r.text
    developer = await client.post(
        "/v1/chat/completions",
        json={**ask, "messages": [{"role": "developer", "content": "be brief"}, CHAT[1]]},
    )
    assert developer.json()["choices"] == r.json()["choices"]  # developer is the newer name of system


# ---- errors -------------------------------------------------------------------------------------------
async def test_errors_in_openai_shape(client: httpx.AsyncClient) -> None:
    ask = {"model": "writer", "messages": CHAT, "max_tokens": 2}
    wrong = await client.post("/v1/chat/completions", json=ask, headers={"Authorization": "Bearer nope"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key" and wrong.headers["www-authenticate"] == "Bearer"
    reader = await key(client, "reader", ["read"])
    refused = error_of(
        await client.post("/v1/embeddings", json={"model": "tiny", "input": "x"}, headers=reader), 403
    )
    assert refused["code"] == "permission_denied"
    assert (await client.get("/v1/models", headers=reader)).status_code == 200  # listing is reading
    limited = await key(client, "tiny-only", ["infer"], models="tiny")
    other = await client.post("/v1/chat/completions", json=ask, headers=limited)
    assert error_of(other, 404)["code"] == "model_not_found"  # as on V2: other models do not exist for it
    for model in ("ghost", "writer:9", "writer:production", "writer:" + "9" * 40, "Bad/Name"):
        missing = await client.post("/v1/chat/completions", json={**ask, "model": model})
        assert error_of(missing, 404)["code"] == "model_not_found", model
    assert error_of(await client.post("/v1/embeddings", content=b"{oops"), 400)["code"] == "invalid_value"
    assert (
        error_of(await client.post("/v1/embeddings", json=[1]), 400)["message"]
        == "the body must be a JSON object"
    )
    assert error_of(await client.post("/v1/embeddings", json={"input": "x"}), 400)["param"] == "model"
    assert error_of(await client.get("/v1/nowhere"), 404)["code"] == "unknown_url"
    assert error_of(await client.get("/v1/embeddings"), 405)["code"] == "method_not_allowed"

    slow = await key(client, "slow", ["infer"], rate_limit=0.01)
    assert (
        await client.post("/v1/embeddings", json={"model": "tiny", "input": "x"}, headers=slow)
    ).status_code == 200
    limited_rate = await client.post("/v1/embeddings", json={"model": "tiny", "input": "x"}, headers=slow)
    error = error_of(limited_rate, 429)
    assert error["code"] == "rate_limit_exceeded" and int(limited_rate.headers["retry-after"]) >= 1


async def test_each_request_is_reported_to_the_observers(client: httpx.AsyncClient) -> None:
    recorder = Recorder()
    services_of(client).dataplane.observers.add(recorder)
    before = completion_tokens(await client.get("/metrics"))
    await client.post("/v1/embeddings", json={"model": "tiny", "input": ["a b", "c"]})
    await client.post("/v1/chat/completions", json={"model": "writer", "messages": CHAT, "max_tokens": 5})
    await client.post(
        "/v1/completions", json={"model": "writer", "prompt": "hi", "max_tokens": 4, "stream": True}
    )
    await client.post("/v1/embeddings", json={"model": "ghost-" + "x" * 20, "input": "x"})
    await client.post("/v1/embeddings", json={"model": "who-knows", "input": []})
    await asyncio.sleep(0)  # observers hear of a request once it has yielded (in process: nothing else)
    embed, chat, stream, missing, refused = recorder.events
    assert {e.surface for e in recorder.events} == {"openai"}
    assert (embed.model, embed.version, embed.status, embed.first_token) == ("tiny", 1, 200, None)
    assert embed.prompt_tokens > 0 and embed.completion_tokens == 0
    assert (chat.model, chat.version, chat.status, chat.completion_tokens) == ("writer", 1, 200, 5)
    assert chat.prompt_tokens > 0 and chat.first_token is not None and 0 < chat.first_token <= chat.duration
    assert chat.per_token is not None and chat.per_token > 0
    assert (stream.status, stream.completion_tokens, stream.error) == (200, 4, None)
    assert (missing.model, missing.status, missing.error) == ("", 404, "not_found")
    assert (refused.model, refused.status) == ("", 400)  # names never reached the data plane: no label
    assert completion_tokens(await client.get("/metrics")) == before + 9


def completion_tokens(metrics: httpx.Response) -> float:
    sample = 'modelport_completion_tokens_total{model="writer",version="1"} '
    lines = [line for line in metrics.text.splitlines() if line.startswith(sample)]
    return float(lines[0].removeprefix(sample)) if lines else 0.0


# ---- timeouts -----------------------------------------------------------------------------------------
async def test_a_timeout_answers_504_and_frees_the_slot(tmp_path: Path, built: dict[str, Path]) -> None:
    services = make_services(tmp_path / "data", generation_timeout=0.5)
    transport = httpx.ASGITransport(app=build_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=AUTH, timeout=60) as c:
            await push(c, "writer", built["long.tar"], {"max_sequences": 1})  # 4000 tokens: seconds
            long = {"model": "writer", "prompt": "hello", "max_tokens": 4000, "temperature": 0}
            await c.post("/v1/completions", json={**long, "max_tokens": 1})  # loaded: no timing of a load
            scheduler = services.dataplane.cache.peek(("writer", 1)).scheduler  # type: ignore[union-attr]

            started = time.perf_counter()
            error = error_of(await c.post("/v1/completions", json=long), 504)
            assert error["code"] == "timeout" and error["type"] == "server_error"
            assert 0.5 <= time.perf_counter() - started < 5
            await until_idle(scheduler)
            quick = time.perf_counter()
            r = await c.post("/v1/completions", json={**long, "max_tokens": 3})
            assert r.status_code == 200 and time.perf_counter() - quick < 1.0

            oai = openai.AsyncOpenAI(base_url="http://t/v1", api_key=ADMIN_KEY, max_retries=0, http_client=c)
            with pytest.raises(openai.InternalServerError) as timed_out:  # the real client, in process
                await oai.chat.completions.create(
                    model="writer", messages=CHAT, max_tokens=4000, temperature=0
                )
            assert timed_out.value.status_code == 504 and timed_out.value.code == "timeout"
            await until_idle(scheduler)

            events = sse(await c.post("/v1/completions", json={**long, "stream": True}))
            assert events[0]["choices"][0]["text"]  # the answer started, then ran out of time
            assert events[-1] == {"error": events[-1]["error"]} and events[-1]["error"]["code"] == "timeout"
            assert "[DONE]" not in events
            await until_idle(scheduler)
    finally:
        services.close()


async def until_idle(scheduler: Any, within: float = 1.0) -> None:
    """The scheduler holds no sequence any more (a cancelled one leaves at the next decoding step)."""
    deadline = time.perf_counter() + within
    while scheduler.inflight:
        assert time.perf_counter() < deadline, "the cancelled sequence still holds its slot"
        await asyncio.sleep(0.005)


async def test_the_surface_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatRequest")
    assert {"400", "401", "403", "404", "429", "503", "504"} <= set(chat["responses"])
    error = chat["responses"]["404"]["content"]["application/json"]["schema"]["$ref"]
    assert error == "#/components/schemas/OpenAIError"
    assert set(spec["components"]["schemas"]["OpenAIErrorDetail"]["properties"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert {"/v1/models", "/v1/models/{model}", "/v1/embeddings", "/v1/completions"} <= set(spec["paths"])


async def logged_now(services: Services) -> None:
    await asyncio.sleep(0.05)  # observers hear of an answer just after it is sent
    services.monitoring.predictions.flush()


async def test_embeddings_are_logged_and_their_centroid_drift_measured(client: httpx.AsyncClient) -> None:
    services = services_of(client)
    config = {"sample_rate": 1.0, "reference_rows": 20}
    assert (await client.put("/api/v1/models/tiny/monitoring/config", json=config)).status_code == 200
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "the",
        "mat",
        "while",
        "a",
        "dog",
        "ran",
        "in",
        "the",
        "park",
        "and",
        "birds",
        "sang",
    ]
    rng = np.random.default_rng(0)

    def sentences(vocabulary: list[str], n: int) -> list[str]:
        return [" ".join(rng.choice(vocabulary, 8)) for _ in range(n)]

    for text in sentences(words, 20):  # one request per text: the first 20 make the reference
        r = await client.post("/v1/embeddings", json={"model": "tiny", "input": text})
        assert r.headers["x-request-id"]
    await logged_now(services)
    await asyncio.to_thread(services.monitoring.make_profiles)
    reference = (await client.get("/api/v1/models/tiny/versions/1/reference")).json()
    assert reference["source"] == "predictions" and reference["profile"]["embedding"]["rows"] == 20
    logged = (await client.get("/api/v1/models/tiny/predictions", params={"limit": 1})).json()["predictions"][
        0
    ]
    assert logged["surface"] == "openai" and len(logged["outputs"]["embedding"][0]) == 32
    since = time.time()
    for text in sentences(words, 20):
        await client.post("/v1/embeddings", json={"model": "tiny", "input": text})
    await logged_now(services)
    record = services.registry.models.get_version("tiny", 1)
    same = services.monitoring.drift(record, since=since, until=time.time())["embedding"]
    since = time.time()
    digits = [str(n) for n in range(1000, 1100)]
    await client.post("/v1/embeddings", json={"model": "tiny", "input": sentences(digits, 20)})
    await logged_now(services)
    moved = services.monitoring.drift(record, since=since, until=time.time())["embedding"]
    assert same["rows"] == 20 and moved["rows"] == 20
    assert moved["cosine_distance"] > 4 * same["cosine_distance"], (same, moved)
    assert not same["drifted"] and moved["drifted"]
