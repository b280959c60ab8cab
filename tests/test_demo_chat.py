"""The demo's ``chat`` model: built with a short budget into a temporary cache, a normal Hugging Face
directory with a chat template, found in the cache the second time (no training), and served like any
pushed transformers model."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport import demo, demo_chat
from tests.conftest import push

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SECONDS = 3.0
QUESTION = "What does json.dumps do?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-chat-cache")


@pytest.fixture(scope="module")
def built(cache: Path) -> Path:
    return demo_chat.chat_model_dir(SECONDS, cache)


@pytest.fixture
def cached_env(monkeypatch: pytest.MonkeyPatch, cache: Path, built: Path) -> Path:
    """The environment ``modelport serve --demo`` would read, pointing at the built cache."""
    monkeypatch.setenv(demo_chat.CACHE_ENV, str(cache))
    monkeypatch.setenv(demo_chat.SECONDS_ENV, str(SECONDS))
    return built


def test_the_directory_is_a_plain_save_pretrained_one(built: Path) -> None:
    assert built.parent.name.startswith("demo-chat-cache") and built.name == demo_chat.recipe_key(SECONDS)
    names = {p.name for p in built.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    config = json.loads((built / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and "auto_map" not in config
    tokenizer_config = json.loads((built / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == demo_chat.CHAT_TEMPLATE

    tokenizer = transformers.AutoTokenizer.from_pretrained(built, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(built, local_files_only=True)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert tokenizer.eos_token == tokenizer.pad_token == "<|end|>"
    assert model.generation_config.eos_token_id == end == model.config.eos_token_id
    assert model.config.vocab_size == len(tokenizer) and model.config.n_positions == 256
    assert json.loads((built / "training.json").read_text())["steps"] > 0


def test_the_chat_template_renders_turns_and_the_generation_prompt(built: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(built, local_files_only=True)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == f"<|system|>\nBe brief.<|end|>\n<|user|>\n{QUESTION}<|end|>\n<|assistant|>\n"
    assert not tokenizer.apply_chat_template(messages, tokenize=False).endswith("<|assistant|>\n")
    ids = tokenizer(prompt)["input_ids"]
    for special in demo_chat.SPECIAL_TOKENS:  # each special token is one token, never split
        assert tokenizer.convert_tokens_to_ids(special) in ids
    with pytest.raises(Exception, match="roles are system, user and assistant"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_the_model_answers_after_the_assistant_turn(built: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(built, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(built, local_files_only=True).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    assert tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_a_second_build_comes_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, cache: Path, cached_env: Path
) -> None:
    def no_training(folder: Path, seconds: float) -> dict[str, object]:
        raise AssertionError("trained again")

    monkeypatch.setattr(demo_chat, "train", no_training)
    assert demo_chat.chat_model_dir(SECONDS, cache) == cached_env
    assert demo_chat.chat_model_dir() == cached_env  # from MODELPORT_DEMO_CACHE and ..._SECONDS
    assert [p.name for p in cache.iterdir()] == [cached_env.name]  # no scratch folder left behind


def test_a_failed_build_leaves_nothing_in_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def failing(folder: Path, seconds: float) -> dict[str, object]:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("out of time")

    monkeypatch.setattr(demo_chat, "train", failing)
    with pytest.raises(RuntimeError, match="out of time"):
        demo_chat.chat_model_dir(1.0, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_folder_and_budget_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (demo_chat.CACHE_ENV, demo_chat.SECONDS_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert demo_chat.cache_root() == Path("/home/someone/.cache/modelport/demo-chat")
    assert demo_chat.seconds_budget() == demo_chat.DEFAULT_SECONDS
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert demo_chat.cache_root() == Path("/xdg/modelport/demo-chat")
    monkeypatch.setenv(demo_chat.CACHE_ENV, "/elsewhere")
    assert demo_chat.cache_root() == Path("/elsewhere")
    monkeypatch.setenv(demo_chat.SECONDS_ENV, "2.5")
    assert demo_chat.seconds_budget() == 2.5
    for wrong in ("soon", "0", "-1"):
        monkeypatch.setenv(demo_chat.SECONDS_ENV, wrong)
        with pytest.raises(ValueError, match=demo_chat.SECONDS_ENV):
            demo_chat.seconds_budget()
    assert demo_chat.recipe_key(3) != demo_chat.recipe_key(90)  # each budget has its own directory


def test_the_demo_pushes_the_archive_and_it_generates_text(
    cached_env: Path, tmp_path: Path, api: TestClient
) -> None:
    chat = next(m for m in demo.demo_models() if m.name == "chat")
    archive = chat.build(tmp_path)
    with tarfile.open(archive) as tar:
        assert "chat/model.safetensors" in tar.getnames()
    r = push(api, "chat", archive)
    assert r.status_code == 201, r.text
    version = r.json()
    assert (version["state"], version["framework"]) == ("ready", "transformers")
    assert version["signature"]["outputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    r = api.post("/v2/models/chat/infer", json=chat.request)  # the demo's own example
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["outputs"][0]["data"][0], str)
    tokenizer = transformers.AutoTokenizer.from_pretrained(cached_env, local_files_only=True)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [prompt]}]}
    r = api.post("/v2/models/chat/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"][0].strip()  # an answer, cut at <|end|>
