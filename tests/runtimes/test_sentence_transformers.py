"""The sentence-transformers runtime with the real all-MiniLM-L6-v2: pushed as an archive, answering as
``SentenceTransformer.encode``, in process, under concurrent load and to tritonclient over a real server;
module types outside the allow-list refused before anything is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.errors import InvalidInput, UnsafeFormat
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.sentence_transformers import ALLOWED_TYPES, SentenceTransformersRuntime
from modelport.server import Services, build_app
from tests.conftest import AUTH, RunningServer, make_services, push
from tests.runtimes import textmodels

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")

TEXTS = [
    "A man is eating food.",
    "A man is riding a horse.",
    "The new movie is awesome",
    "modelport serves sentence embeddings",
    "",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("st")
    bert = textmodels.bert_classifier(d / "bert" / "model")
    return {
        "minilm.tar": textmodels.tar_dir(textmodels.minilm(), d / "minilm.tar", top="all-MiniLM-L6-v2"),
        "bert": bert,
        "bert.tar.gz": textmodels.tar_dir(bert, d / "bert.tar.gz"),
        "tiny": textmodels.sentence_transformer(d / "tiny" / "model", bert),
    }


@pytest.fixture(scope="module")
def encoder() -> Any:
    return st.SentenceTransformer(str(textmodels.minilm()), device="cpu")


def load(folder: Path, **options: Any) -> SentenceTransformersRuntime:
    """Loaded with this process's torch threads as they are (the runtime sets what it is given)."""
    runtime = SentenceTransformersRuntime()
    runtime.load(folder, LoadOptions(threads=torch.get_num_threads(), **options))
    return runtime


def infer_texts(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def embeddings_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["name"] == "embedding" and out["datatype"] == "FP32"
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def test_modules_json_is_recognised_by_its_content(built: dict[str, Path], tmp_path: Path) -> None:
    minilm = textmodels.minilm()
    recognised = [p.name for p in sorted(minilm.rglob("*")) if SentenceTransformersRuntime.recognise(p)]
    assert recognised == ["modules.json"]
    renamed = tmp_path / "list.txt"
    renamed.write_bytes((minilm / "modules.json").read_bytes())
    assert SentenceTransformersRuntime.recognise(renamed)
    assert not SentenceTransformersRuntime.recognise(built["bert"] / "config.json")
    assert "sentence_transformers.models.Transformer" in ALLOWED_TYPES
    assert "sentence_transformers.base.modules.transformer.Transformer" in ALLOWED_TYPES  # as 6.x saves it
    assert "sentence_transformers.sentence_transformer.modules.pooling.Pooling" in ALLOWED_TYPES


def test_minilm_pushed_as_an_archive_answers_as_encode(
    api: TestClient, built: dict[str, Path], encoder: Any
) -> None:
    r = push(api, "minilm", built["minilm.tar"])
    assert r.status_code == 201, r.text
    version = r.json()
    assert version["state"] == "ready" and version["framework"] == "sentence-transformers"
    assert version["signature"] == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}],
    }
    got = embeddings_of(api.post("/v2/models/minilm/infer", json=infer_texts(TEXTS)))
    np.testing.assert_allclose(got, encoder.encode(TEXTS), atol=1e-5)


def test_embed_and_its_limits(built: dict[str, Path], encoder: Any, tmp_path: Path) -> None:
    runtime = load(textmodels.minilm().parent)
    assert runtime.max_input_tokens() == 256
    assert runtime.memory().host > 80_000_000
    texts = textmodels.sentences(16, longest=300)  # past 256 tokens too: truncated as encode truncates
    batch = runtime.embed(texts)
    np.testing.assert_allclose(batch, encoder.encode(texts), atol=1e-5)
    alone = np.concatenate([runtime.embed([t]) for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    assert runtime.embed([]).shape == (0, 384)
    column = runtime.predict({"text": np.array([t.encode() for t in texts[:3]], dtype=object).reshape(3, 1)})
    np.testing.assert_allclose(column["embedding"], batch[:3], atol=1e-5)
    runtime.unload()
    assert runtime.memory().host == 0


async def test_concurrent_requests_of_mixed_lengths_answer_as_one_by_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, built: dict[str, Path], encoder: Any
) -> None:
    rows = textmodels.record_batches(monkeypatch, SentenceTransformersRuntime)
    services = make_services(tmp_path / "data", max_batch_delay_ms=20)
    transport = httpx.ASGITransport(app=build_app(services))
    texts = textmodels.sentences(30)  # 1 to 60 words
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as client:
            r = await client.post(
                "/api/v1/models/minilm/versions",
                content=built["minilm.tar"].read_bytes(),
                params={"filename": "minilm.tar"},
            )
            assert r.status_code == 201, r.text
            together = await asyncio.gather(
                *(client.post("/v2/models/minilm/infer", json=infer_texts([t])) for t in texts)
            )
    finally:
        services.close()
    assert max(rows) > 1, rows  # requests were merged
    expected = np.stack([encoder.encode(t) for t in texts])
    np.testing.assert_allclose(np.concatenate([embeddings_of(r) for r in together]), expected, atol=1e-5)


# ---- tritonclient over a real server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, built: dict[str, Path]) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("st-server") / "data")
    try:
        for model, archive in (("minilm", "minilm.tar"), ("sentiment", "bert.tar.gz")):
            r = httpx.post(
                f"{running.url}/api/v1/models/{model}/versions",
                content=built[archive].read_bytes(),
                params={"filename": archive},
                headers=AUTH,
                timeout=120,
            )
            assert r.status_code == 201 and r.json()["state"] == "ready", r.text
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_sends_texts_as_bytes(
    server: RunningServer, built: dict[str, Path], encoder: Any, binary: bool
) -> None:
    triton = pytest.importorskip("tritonclient.http")
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    texts = [*TEXTS[:4], "naïve café — ünïcode"]
    text = triton.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    wanted = [triton.InferRequestedOutput("embedding", binary_data=binary)]
    result = client.infer("minilm", [text], outputs=wanted, headers=dict(AUTH))
    np.testing.assert_allclose(result.as_numpy("embedding"), encoder.encode(texts), atol=1e-5)

    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "scores")]
    result = client.infer("sentiment", [text], outputs=outputs, headers=dict(AUTH))
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(built["bert"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(built["bert"])
    with torch.inference_mode():
        scores = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits.softmax(-1) for t in texts])
    labels = [model.config.id2label[int(i)] for i in scores.argmax(-1)]
    served = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]  # JSON gives str
    assert served == labels
    np.testing.assert_allclose(result.as_numpy("scores"), scores.numpy(), atol=1e-5)
    client.close()


# ---- refusals -----------------------------------------------------------------------------------------
def with_modules(tiny: Path, dest: Path, change: dict[int, dict[str, Any]]) -> Path:
    modules = json.loads((tiny / "modules.json").read_text())
    for index, fields in change.items():
        modules[index].update(fields)
    return textmodels.variant(tiny, dest, {"modules.json": json.dumps(modules).encode()})


@pytest.mark.parametrize(
    "module_type",
    [
        "sentence_transformers.util.misc.import_from_string",  # inside the package, yet not a module
        "sentence_transformers.models.Router",  # loads further types of its own
        "modeling_evil.EvilModule",  # the artifact's own code
        "os.system",
    ],
)
def test_a_module_type_outside_the_allow_list_is_refused_and_nothing_is_stored(
    api: TestClient, services: Services, built: dict[str, Path], tmp_path: Path, module_type: str
) -> None:
    folder = with_modules(built["tiny"], tmp_path / "evil" / "model", {1: {"type": module_type}})
    r = push(api, "evil", textmodels.tar_dir(folder, tmp_path / "evil.tar.gz"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "unsafe_format"
    assert f"modules.json names the module type {module_type!r}" in r.json()["error"]["message"]
    assert api.get("/api/v1/models/evil/versions").status_code == 404
    assert services.repository.store.digests() == []


def test_a_tiny_model_serves_and_unsafe_variants_are_refused(built: dict[str, Path], tmp_path: Path) -> None:
    runtime = load(built["tiny"].parent)
    reference = st.SentenceTransformer(str(built["tiny"]), device="cpu")
    np.testing.assert_allclose(runtime.embed(TEXTS), reference.encode(TEXTS), atol=1e-5)
    runtime.unload()

    tiny = built["tiny"]
    dense = {"in_features": 32, "out_features": 8, "activation_function": "builtins.exec"}
    cases: list[tuple[Path, type[Exception], str]] = [
        (
            with_modules(tiny, tmp_path / "a" / "m", {1: {"path": "../../etc"}}),
            UnsafeFormat,
            "points outside",
        ),
        (
            textmodels.variant(
                tiny,
                tmp_path / "b" / "m",
                {
                    "modules.json": json.dumps(
                        [
                            *json.loads((tiny / "modules.json").read_text()),
                            {
                                "idx": 3,
                                "name": "3",
                                "path": "3_Dense",
                                "type": "sentence_transformers.models.Dense",
                            },
                        ]
                    ).encode(),
                    "3_Dense/config.json": json.dumps(dense).encode(),
                },
            ),
            UnsafeFormat,
            "only torch.nn activation classes",
        ),
        (
            textmodels.variant(tiny, tmp_path / "c" / "m", {"pytorch_model.bin": b"\x80\x02}q\x00."}),
            UnsafeFormat,
            "safetensors weights and pickled ones",
        ),
        (
            textmodels.variant(
                tiny,
                tmp_path / "d" / "m",
                {
                    "config.json": json.dumps(
                        {"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}}
                    ).encode()
                },
            ),
            UnsafeFormat,
            "auto_map",
        ),
        (
            with_modules(
                tiny, tmp_path / "e" / "m", {1: {"type": "sentence_transformers.models.Transformer"}}
            ),
            InvalidInput,
            "exactly one Transformer",
        ),
        (
            textmodels.variant(
                tiny,
                tmp_path / "f" / "m",
                {"config_sentence_transformers.json": json.dumps({"model_type": "SparseEncoder"}).encode()},
            ),
            InvalidInput,
            "SparseEncoder",
        ),
    ]
    for folder, error, needle in cases:
        with pytest.raises(error) as caught:
            SentenceTransformersRuntime.vet(folder.parent, LoadOptions())
        assert needle in caught.value.args[0], (folder, caught.value)
    with pytest.raises(InvalidInput, match="unknown runtime setting"):
        SentenceTransformersRuntime.vet(tiny.parent, LoadOptions(settings={"pooling": "cls"}))
    with pytest.raises(InvalidInput, match="does feature-extraction"):
        SentenceTransformersRuntime.vet(tiny.parent, LoadOptions(task="text-generation"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_on_the_gpu_embeddings_match_encode(encoder: Any, dtype: str) -> None:
    runtime = load(textmodels.minilm().parent, device="cuda", dtype=dtype)
    assert runtime.memory().gpu > 0
    texts = textmodels.sentences(50)
    got = runtime.embed(texts)
    assert got.dtype == np.float32 and got.shape == (50, 384)
    np.testing.assert_allclose(got, encoder.encode(texts), atol=1e-4 if dtype == "float32" else 5e-3)
    runtime.unload()
