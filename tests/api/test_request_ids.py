"""``X-Request-Id`` on every inference answer (V2 on the fast path and on its FastAPI route, OpenAI /v1,
streamed or not, errors too): the client's own when it is a plain token, else a new one, never an echo of
what the client sent otherwise; observers get the same id."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.api.inference import request_id
from modelport.server import Services, build_app
from modelport.serving.observers import InferenceEvent
from tests.conftest import AUTH, push

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
GENERATED = re.compile(r"[0-9a-f]{32}")
VALID = [
    "0b4c6f1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e",  # a UUID
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a W3C traceparent
    "req_1.2:3",
    "a",
    "Z" * 128,
]
INVALID = [
    "",
    " ",
    "-leading-dash",
    ".dot",
    "has space",
    "semi;colon",
    "<script>alert(1)</script>",
    "a" * 129,
    'quote"d',
    "tab\there",
    "slash/es",
]


class Recorder:
    def __init__(self) -> None:
        self.events: list[InferenceEvent] = []

    def observe(self, event: InferenceEvent) -> None:
        self.events.append(event)


@pytest.fixture
def recorded(services: Services) -> Recorder:
    recorder = Recorder()
    services.dataplane.observers.add(recorder)
    return recorder


@pytest.fixture
def both(services: Services, artifacts: dict[str, Path]) -> Iterator[tuple[TestClient, TestClient]]:
    """The fast path, and the FastAPI routes behind it."""
    app = build_app(services)
    with (
        TestClient(app, headers=AUTH, raise_server_exceptions=False) as fast,
        TestClient(app.app, headers=AUTH, raise_server_exceptions=False) as plain,
    ):
        assert push(fast, "iris", artifacts["iris.skops"]).status_code == 201
        yield fast, plain


def test_the_rule() -> None:
    for given in VALID:
        assert request_id(given) == given
    for given in [*INVALID, None]:
        made = request_id(given)
        assert GENERATED.fullmatch(made) and made != given


def test_v2_answers_carry_the_clients_id_or_a_new_one(
    both: tuple[TestClient, TestClient], recorded: Recorder
) -> None:
    for client in both:
        for given in VALID:
            r = client.post("/v2/models/iris/infer", json=ROW, headers={"X-Request-Id": given})
            assert r.status_code == 200 and r.headers["x-request-id"] == given
        for given in INVALID:
            r = client.post("/v2/models/iris/infer", json=ROW, headers={"X-Request-Id": given})
            assert r.status_code == 200 and GENERATED.fullmatch(r.headers["x-request-id"]), given
        made = {client.post("/v2/models/iris/infer", json=ROW).headers["x-request-id"] for _ in range(20)}
        assert len(made) == 20 and all(GENERATED.fullmatch(m) for m in made)
        # errors: unknown model and version, a bad body, no key, a bad tensor
        errors = [
            client.post("/v2/models/ghost/infer", json=ROW, headers={"X-Request-Id": "e1"}),
            client.post("/v2/models/iris/versions/9/infer", json=ROW, headers={"X-Request-Id": "e2"}),
            client.post("/v2/models/iris/infer", content=b"{nope", headers={"X-Request-Id": "e3"}),
            client.post(
                "/v2/models/iris/infer", json=ROW, headers={"X-Request-Id": "e4", "Authorization": ""}
            ),
            client.post("/v2/models/iris/infer", json={"inputs": []}, headers={"X-Request-Id": "e5"}),
        ]
        assert [r.status_code for r in errors] == [404, 404, 400, 401, 400]
        assert [r.headers["x-request-id"] for r in errors] == ["e1", "e2", "e3", "e4", "e5"]
        bad = client.post("/v2/models/ghost/infer", json=ROW, headers={"X-Request-Id": "no way"})
        assert bad.status_code == 404 and GENERATED.fullmatch(bad.headers["x-request-id"])
    # observers hear of each request under the id its answer carried
    ids = [e.request_id for e in recorded.events]
    assert ids.count("e1") == 2 and ids.count(VALID[0]) == 2 and all(ids)


def test_oversized_headers_on_an_inference_path_still_carry_an_id(
    both: tuple[TestClient, TestClient],
) -> None:
    fast, _ = both
    padded = {"X-Padding": "a" * 20_000, "X-Request-Id": "big-1"}
    r = fast.post("/v2/models/iris/infer", json=ROW, headers=padded)
    assert r.status_code == 431 and r.headers["x-request-id"] == "big-1"
    r = fast.post("/v1/embeddings", json={}, headers={"X-Padding": "a" * 20_000})
    assert r.status_code == 431 and GENERATED.fullmatch(r.headers["x-request-id"])
    assert "x-request-id" not in fast.get("/api/v1/models", headers=padded).headers  # not an inference


# ---- OpenAI /v1 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    from tests.runtimes import textmodels

    d = tmp_path_factory.mktemp("text")
    lm = textmodels.gpt2_lm(d / "lm" / "model")
    tiny = textmodels.sentence_transformer(
        d / "tiny" / "model", textmodels.bert_classifier(d / "bert" / "model")
    )
    return {
        "writer": textmodels.tar_dir(lm, d / "writer.tar", top=None),
        "tiny": textmodels.tar_dir(tiny, d / "tiny.tar"),
    }


def test_openai_answers_carry_ids(api: TestClient, recorded: Recorder, text_models: dict[str, Path]) -> None:
    assert push(api, "writer", text_models["writer"]).status_code == 201
    assert push(api, "tiny", text_models["tiny"]).status_code == 201
    chat = {"model": "writer", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    answers = {
        "emb": api.post(
            "/v1/embeddings", json={"model": "tiny", "input": "hi"}, headers={"X-Request-Id": "emb"}
        ),
        "chat": api.post("/v1/chat/completions", json=chat, headers={"X-Request-Id": "chat"}),
        "text": api.post(
            "/v1/completions",
            json={"model": "writer", "prompt": "hi", "max_tokens": 2},
            headers={"X-Request-Id": "text"},
        ),
        "404": api.post(
            "/v1/embeddings", json={"model": "ghost", "input": "x"}, headers={"X-Request-Id": "404"}
        ),
        "400": api.post("/v1/chat/completions", json={"model": "writer"}, headers={"X-Request-Id": "400"}),
        "401": api.post(
            "/v1/completions",
            json={"model": "writer", "prompt": "x"},
            headers={"X-Request-Id": "401", "Authorization": ""},
        ),
    }
    for rid, r in answers.items():
        assert r.headers["x-request-id"] == rid, (rid, r.status_code, r.text)
    assert [answers[k].status_code for k in ("emb", "chat", "text", "404", "400", "401")] == [200] * 3 + [
        404,
        400,
        401,
    ]
    with api.stream(
        "POST", "/v1/chat/completions", json={**chat, "stream": True}, headers={"X-Request-Id": "sse"}
    ) as streamed:
        assert streamed.status_code == 200 and streamed.headers["x-request-id"] == "sse"
        assert "".join(streamed.iter_text()).endswith("data: [DONE]\n\n")
    with api.stream(
        "POST",
        "/v1/completions",
        json={"model": "writer", "prompt": "x", "stream": True},
        headers={"X-Request-Id": "x y"},
    ) as replaced:
        made = replaced.headers["x-request-id"]
        assert GENERATED.fullmatch(made)
        replaced.read()
    plain = api.post("/v1/embeddings", json={"model": "tiny", "input": "hi"})
    assert GENERATED.fullmatch(plain.headers["x-request-id"])
    seen = {e.request_id for e in recorded.events if e.surface == "openai"}
    assert {*answers, "sse", made, plain.headers["x-request-id"]} <= seen
