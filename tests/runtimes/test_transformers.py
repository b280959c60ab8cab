"""The transformers runtime: tiny models built here, pushed as archives over HTTP, answering as the framework
does; merged batches of mixed lengths answering as rows one by one; unsafe artifacts refused before
anything is stored."""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.errors import InvalidInput, UnsafeFormat
from modelport.runtimes import textkit
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.runtimes.transformers import TransformersRuntime
from modelport.server import Services, build_app
from tests.conftest import AUTH, make_services, push
from tests.runtimes import textmodels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "models serve predictions", "a"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("textmodels")
    bert = textmodels.bert_classifier(d / "bert" / "model")  # each in an artifact directory of its own
    gpt2 = textmodels.gpt2_lm(d / "gpt2" / "model")
    return {
        "bert": bert,
        "gpt2": gpt2,
        "bert.tar.gz": textmodels.tar_dir(bert, d / "bert.tar.gz"),
        "gpt2.tar.gz": textmodels.tar_dir(gpt2, d / "gpt2.tar.gz", top=None),
    }


def infer_texts(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def outputs_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def classifier_reference(folder: Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The framework's own answers, each text alone: labels and softmax scores."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        scores = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits.softmax(-1) for t in texts])
    return [model.config.id2label[int(i)] for i in scores.argmax(-1)], scores.numpy()


def load(folder: Path, **options: Any) -> TransformersRuntime:
    """Loaded with this process's torch threads as they are (the runtime sets what it is given)."""
    runtime = TransformersRuntime()
    runtime.load(folder, LoadOptions(threads=torch.get_num_threads(), **options))
    return runtime


# ---- recognition ----------------------------------------------------------------------------------------
def test_a_config_is_recognised_by_its_content(built: dict[str, Path], tmp_path: Path) -> None:
    bert = built["bert"]
    assert TransformersRuntime.recognise(bert / "config.json")
    for other in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        assert not TransformersRuntime.recognise(bert / other)
    renamed = tmp_path / "settings.txt"
    renamed.write_bytes((bert / "config.json").read_bytes())
    assert TransformersRuntime.recognise(renamed)  # content, not name
    minilm = textmodels.minilm()  # a sentence-transformers model: its runtime's, not this one's
    assert not any(TransformersRuntime.recognise(p) for p in minilm.rglob("*") if p.is_file())
    catalog = RuntimeCatalog.from_entry_points()
    assert catalog.detect(bert) == "transformers"
    assert catalog.detect(minilm) == "sentence-transformers"


# ---- served over HTTP -------------------------------------------------------------------------------------
def test_classifier_pushed_as_an_archive_answers_as_the_framework(
    api: TestClient, built: dict[str, Path]
) -> None:
    r = push(api, "sentiment", built["bert.tar.gz"])
    assert r.status_code == 201, r.text
    version = r.json()
    assert version["state"] == "ready" and version["framework"] == "transformers"
    assert version["signature"] == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
        ],
    }
    texts = textmodels.sentences(12)
    out = outputs_of(api.post("/v2/models/sentiment/infer", json=infer_texts(texts)))
    labels, scores = classifier_reference(built["bert"], texts)
    assert out["label"].tolist() == labels
    assert len(set(labels)) > 1  # the tiny model tells texts apart: the comparison means something
    np.testing.assert_allclose(out["scores"], scores, atol=1e-5)
    only = api.post(
        "/v2/models/sentiment/infer", json={**infer_texts(texts[:2]), "outputs": [{"name": "label"}]}
    )
    assert [o["name"] for o in only.json()["outputs"]] == ["label"]


def test_the_same_directory_pushed_for_its_embeddings(api: TestClient, built: dict[str, Path]) -> None:
    r = push(api, "features", built["bert.tar.gz"], task="feature-extraction")
    assert r.status_code == 201, r.text
    assert r.json()["signature"]["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]
    out = outputs_of(api.post("/v2/models/features/infer", json=infer_texts(TEXTS)))
    np.testing.assert_allclose(out["embedding"], features_reference(built["bert"], TEXTS, "mean"), atol=1e-5)
    settings = {"runtime": {"pooling": "cls", "normalize": True}}  # the version's runtime settings
    assert api.patch("/api/v1/models/features/versions/1/config", json=settings).status_code == 200
    out = outputs_of(api.post("/v2/models/features/infer", json=infer_texts(TEXTS)))
    expected = features_reference(built["bert"], TEXTS, "cls", normalize=True)
    np.testing.assert_allclose(out["embedding"], expected, atol=1e-5)
    # a setting the runtime does not accept is refused now (400), and the version keeps its settings
    wrong = api.patch("/api/v1/models/features/versions/1/config", json={"runtime": {"pooling": "max"}})
    assert wrong.status_code == 400 and "pooling" in wrong.json()["error"]["message"]
    assert api.get("/api/v1/models/features/versions/1/config").json() == settings

    bad = push(api, "features", built["bert.tar.gz"], task="summarization")
    assert bad.status_code == 400
    message = bad.json()["error"]["message"]
    assert "text-classification, feature-extraction, text-generation" in message


def features_reference(folder: Path, texts: list[str], pooling: str, normalize: bool = False) -> np.ndarray:
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.inference_mode():
        for text in texts:
            hidden = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]
            row = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
            rows.append(torch.nn.functional.normalize(row, dim=0) if normalize else row)
    return torch.stack(rows).numpy()


def test_generation_is_the_greedy_continuation(api: TestClient, built: dict[str, Path]) -> None:
    r = push(api, "writer", built["gpt2.tar.gz"])
    assert r.status_code == 201, r.text
    assert r.json()["signature"]["outputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    prompts = ["hello world", "the quick brown fox", "models"]
    out = outputs_of(api.post("/v2/models/writer/infer", json=infer_texts(prompts)))
    model = transformers.AutoModelForCausalLM.from_pretrained(built["gpt2"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(built["gpt2"])
    expected = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        generated = model.generate(
            **ids, max_new_tokens=64, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )  # the default: half the model's 128 positions
        expected.append(tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    assert out["text"].tolist() == expected
    assert len(set(expected)) == len(expected)


# ---- batching ---------------------------------------------------------------------------------------------
async def test_concurrent_requests_of_mixed_lengths_answer_as_one_by_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, built: dict[str, Path]
) -> None:
    rows = textmodels.record_batches(monkeypatch, TransformersRuntime)
    services = make_services(tmp_path / "data", max_batch_delay_ms=20)
    transport = httpx.ASGITransport(app=build_app(services))
    texts = textmodels.sentences(30)  # 1 to 60 words
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=AUTH, timeout=60
        ) as client:
            r = await client.post(
                "/api/v1/models/sentiment/versions",
                content=built["bert.tar.gz"].read_bytes(),
                params={"filename": "bert.tar.gz"},
            )
            assert r.status_code == 201, r.text
            alone = [
                outputs_of(await client.post("/v2/models/sentiment/infer", json=infer_texts([t])))
                for t in texts
            ]
            together = await asyncio.gather(
                *(client.post("/v2/models/sentiment/infer", json=infer_texts([t])) for t in texts)
            )
    finally:
        services.close()
    assert max(rows) > 1, rows  # requests were merged
    for one, answer in zip(alone, map(outputs_of, together), strict=True):
        assert answer["label"].tolist() == one["label"].tolist()
        np.testing.assert_allclose(answer["scores"], one["scores"], atol=1e-5)


def test_a_merged_batch_runs_in_length_sorted_chunks_and_keeps_row_order(built: dict[str, Path]) -> None:
    runtime = load(built["bert"].parent, task="feature-extraction", settings={"pooling": "cls"})
    texts = textmodels.sentences(40)
    texts[7] = " ".join(["fox"] * 500)  # longer than the model: truncated, and padding no short row
    batch = runtime.predict({"text": np.array(texts, dtype=object)})["embedding"]
    alone = np.concatenate(
        [runtime.predict({"text": np.array([t], dtype=object)})["embedding"] for t in texts]
    )
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    column = runtime.predict({"text": np.array(texts[:3], dtype=object).reshape(3, 1)})["embedding"]
    np.testing.assert_allclose(column, batch[:3], atol=1e-5)  # [n, 1] as [n]
    assert runtime.predict({"text": np.array([b"hello world"], dtype=object)})["embedding"].shape == (1, 32)
    assert runtime.embed([]).shape == (0, 32)
    runtime.unload()


def test_chunks_cover_each_row_once_and_cost_least() -> None:
    lengths = [3, 70, 5, 512, 12, 40, 41, 2, 300, 9] * 7
    chunks = textkit.plan_chunks(lengths, 16, max_tokens=4096, max_rows=16)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) <= 16 and len(chunk) * max(lengths[i] for i in chunk) <= 4096
    assert textkit.plan_chunks([]) == [] and textkit.plan_chunks([7]) == [[0]]

    def cost(grouping: list[list[int]], call: float, row_lengths: list[int]) -> float:
        return sum(call + len(c) * max(row_lengths[i] for i in c) for c in grouping)

    short = [9, 31, 12, 30, 8, 10, 29, 11]
    order = sorted(range(len(short)), key=lambda i: -short[i])
    for call in (0, 16, 2048):  # against every split of the length-sorted rows
        splits = [
            [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)])]
            for k in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), k)
        ]
        least = min(cost(split, call, short) for split in splits)
        assert cost(textkit.plan_chunks(short, call), call, short) == least
    assert len(textkit.plan_chunks(short, 2048)) == 1  # a GPU call costs more than the padding
    assert len(textkit.plan_chunks(short, 16)) == 2  # a CPU pads the short rows less


# ---- options ----------------------------------------------------------------------------------------------
def test_pooling_and_normalisation_follow_the_runtime_settings(built: dict[str, Path]) -> None:
    artifact = built["bert"].parent
    for settings in ({"pooling": "cls"}, {"pooling": "mean", "normalize": True}):
        runtime = load(artifact, task="feature-extraction", settings=settings)
        got = runtime.embed(TEXTS)
        expected = features_reference(
            built["bert"], TEXTS, str(settings["pooling"]), bool(settings.get("normalize", False))
        )
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert runtime.max_input_tokens() == 128 and runtime.memory().host > 0
        runtime.unload()
    with pytest.raises(InvalidInput, match="embeddings need a feature-extraction version"):
        load(artifact).embed(TEXTS)


@pytest.mark.parametrize(
    ("task", "settings", "needle"),
    [
        ("text-classification", {"pooling": "cls"}, "unknown runtime setting(s) ['pooling']"),
        ("feature-extraction", {"pooling": "max"}, "'pooling' must be one of mean, cls"),
        ("feature-extraction", {"normalize": "yes"}, "'normalize' must be true or false"),
        ("text-generation", {}, "text-generation needs a *ForCausalLM or *LMHeadModel model"),
        ("translation", {}, "use one of text-classification, feature-extraction, text-generation"),
    ],
)
def test_options_are_checked_before_anything_is_stored(
    built: dict[str, Path], task: str, settings: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        TransformersRuntime.vet(built["bert"].parent, LoadOptions(task=task, settings=settings))
    assert needle in caught.value.message


def test_generation_length_comes_from_the_settings(built: dict[str, Path]) -> None:
    runtime = load(built["gpt2"].parent, settings={"max_new_tokens": 3})
    model = transformers.AutoModelForCausalLM.from_pretrained(built["gpt2"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(built["gpt2"])
    ids = tokenizer("hello", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    expected = tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert runtime.predict({"text": np.array(["hello"], dtype=object)})["text"].tolist() == [
        expected.encode()
    ]
    with pytest.raises(InvalidInput, match="'max_new_tokens' must be an integer from 1 to 4096"):
        TransformersRuntime.vet(built["gpt2"].parent, LoadOptions(settings={"max_new_tokens": 0}))
    with pytest.raises(
        InvalidInput, match=r"max_new_tokens \(128\) must be under the model's maximum length"
    ):
        TransformersRuntime.vet(built["gpt2"].parent, LoadOptions(settings={"max_new_tokens": 128}))


# ---- refusals ------------------------------------------------------------------------------------------
def pickled_state_dict(folder: Path) -> bytes:
    path = folder / "state.bin"
    torch.save({"w": torch.zeros(2)}, path)
    data = path.read_bytes()
    path.unlink()
    return data


def refused_variants(bert: Path, scratch: Path) -> dict[str, tuple[Path, str]]:
    config = json.loads((bert / "config.json").read_text())
    tokenizer_config = json.loads((bert / "tokenizer_config.json").read_text())
    protocol0 = pickle.dumps({"weights": [0.0]}, protocol=0)  # no header: only its name tells
    cases = {
        "torch.save weights": (
            {"pytorch_model.bin": pickled_state_dict(scratch), "model.safetensors": None},
            "pickle",
        ),
        "pickle weights": ({"weights.pt": protocol0, "model.safetensors": None}, "convert to safetensors"),
        "safetensors and bin": ({"pytorch_model.bin": protocol0}, "safetensors weights and pickled ones"),
        "auto_map in config.json": (
            {"config.json": json.dumps({**config, "auto_map": {"AutoModel": "modeling_evil.Evil"}}).encode()},
            "auto_map",
        ),
        "auto_map in tokenizer_config.json": (
            {
                "tokenizer_config.json": json.dumps(
                    {**tokenizer_config, "auto_map": {"AutoTokenizer": ["tok_evil.T", None]}}
                ).encode(),
                "tok_evil.py": b"import os\nos.system('touch /tmp/pwned')\n",
            },
            "auto_map",
        ),
        "unknown model type": (
            {"config.json": json.dumps({**config, "model_type": "evil-net"}).encode()},
            "trust_remote_code",
        ),
        "no safetensors": ({"model.safetensors": None}, "no *.safetensors weights"),
        "a vocabulary file outside the model": (
            {"tokenizer_config.json": json.dumps({**tokenizer_config, "vocab_file": "/etc/passwd"}).encode()},
            "in its own folder",
        ),
        "a weight shard outside the model": (
            {
                "model.safetensors.index.json": json.dumps(
                    {"weight_map": {"w": "../../w.safetensors"}}
                ).encode()
            },
            "in its own folder",
        ),
    }
    out = {}
    for i, (name, (files, needle)) in enumerate(cases.items()):
        folder = textmodels.variant(bert, scratch / f"v{i}", files)
        out[name] = (textmodels.tar_dir(folder, scratch / f"v{i}.tar.gz"), needle)
    return out


def test_unsafe_or_incomplete_artifacts_are_refused_and_nothing_is_stored(
    api: TestClient, services: Services, built: dict[str, Path], tmp_path: Path
) -> None:
    for name, (archive, needle) in refused_variants(built["bert"], tmp_path).items():
        r = push(api, "refused", archive)
        assert 400 <= r.status_code < 500, (name, r.text)
        assert needle in r.json()["error"]["message"], (name, r.text)
        assert str(tmp_path) not in r.text  # no server paths in the answer
        listed = api.get("/api/v1/models/refused/versions")
        assert listed.status_code == 404 or listed.json() == [], (name, listed.text)
    assert services.repository.store.digests() == []


def test_vet_refuses_code_before_loading(built: dict[str, Path], tmp_path: Path) -> None:
    folder = textmodels.variant(
        built["bert"],
        tmp_path / "a" / "model",
        {"config.json": json.dumps({"auto_map": {}, "model_type": "bert"}).encode()},
    )
    with pytest.raises(UnsafeFormat, match=r"model/config.json has an auto_map"):
        TransformersRuntime.vet(folder.parent, LoadOptions())
    with pytest.raises(UnsafeFormat):  # load vets too: a version stored before these checks is refused
        load(folder.parent)
    tokenizer_config = json.loads((built["bert"] / "tokenizer_config.json").read_text())
    padding = {"pad": "x" * (2 << 20)}  # larger than any config: still read for an auto_map
    large = {**padding, **tokenizer_config, "auto_map": {"AutoTokenizer": ["t.T", None]}}
    folder = textmodels.variant(
        built["bert"], tmp_path / "b" / "model", {"tokenizer_config.json": json.dumps(large).encode()}
    )
    with pytest.raises(UnsafeFormat, match=r"model/tokenizer_config.json has an auto_map"):
        TransformersRuntime.vet(folder.parent, LoadOptions())
    mentioned = {**padding, **tokenizer_config, "note": "auto_map"}  # a mention alone is not one
    folder = textmodels.variant(
        built["bert"], tmp_path / "c" / "model", {"tokenizer_config.json": json.dumps(mentioned).encode()}
    )
    TransformersRuntime.vet(folder.parent, LoadOptions())
    two = tmp_path / "two"
    shutil.copytree(built["bert"], two / "one")
    shutil.copytree(built["bert"], two / "other")
    with pytest.raises(InvalidInput, match="several transformers models"):
        TransformersRuntime.vet(two, LoadOptions())


# ---- GPU -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_on_the_gpu_the_answers_match_the_cpu(built: dict[str, Path], dtype: str) -> None:
    texts = textmodels.sentences(20)
    cpu = load(built["bert"].parent)
    gpu = load(built["bert"].parent, device="cuda", dtype=dtype)
    assert gpu.memory().gpu > 0 and gpu.memory().host == 0
    x = {"text": np.array(texts, dtype=object)}
    expected, got = cpu.predict(x), gpu.predict(x)
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-4 if dtype == "float32" else 2e-2)
    generator = load(built["gpt2"].parent, device="cuda")
    cpu_generator = load(built["gpt2"].parent)
    prompts = {"text": np.array(["hello world", "the quick"], dtype=object)}
    assert generator.predict(prompts)["text"].tolist() == cpu_generator.predict(prompts)["text"].tolist()
    for runtime in (cpu, gpu, generator, cpu_generator):
        runtime.unload()
