"""Continuous batching of a causal LM (runtimes/decoding.py) and the text bookkeeping of streams: answers
as the model gives them alone, per-request sampling, stop strings, bounds, and slots freed at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

from modelport.errors import InferenceFailed, InvalidInput, Overloaded
from modelport.runtimes.base import Batching, LoadOptions, Task
from modelport.runtimes.decoding import ContinuousBatcher
from modelport.runtimes.streams import LENGTH, STOP, Sampling, TextTail, TokenStream
from modelport.runtimes.transformers import TransformersRuntime
from modelport.serving.batcher import BatchPolicy
from tests.runtimes import textmodels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = [
    "hello world",
    "the quick brown fox",
    "models serve predictions",
    "a b c",
    "sentence embeddings",
    "modelport loads safetensors",
    "the lazy dog",
    "small test of the tokenizer",
]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return textmodels.gpt2_lm(tmp_path_factory.mktemp("gen") / "model")


@pytest.fixture(scope="module")
def runtime(gpt2: Path) -> Iterator[TransformersRuntime]:
    loaded = TransformersRuntime()
    loaded.load(gpt2.parent, LoadOptions(threads=torch.get_num_threads()))
    yield loaded
    loaded.unload()


def batcher(
    runtime: TransformersRuntime, policy: BatchPolicy | None = None, **settings: Any
) -> ContinuousBatcher:
    runtime._settings = dict(settings)  # as a version configured with these runtime settings
    reports: list[tuple[int, int]] = []
    made = runtime.scheduler(
        ThreadPoolExecutor(1), policy or BatchPolicy(), lambda r, w: reports.append((r, w))
    )
    return cast(ContinuousBatcher, made)


def greedy(tokens: int, **more: Any) -> Sampling:
    return Sampling(max_tokens=tokens, temperature=0.0, **more)


def reference(gpt2: Path, prompt: str, tokens: int) -> str:
    """transformers' own greedy generation, one prompt alone."""
    model = transformers.AutoModelForCausalLM.from_pretrained(gpt2).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gpt2)
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


# ---- the decoding loop ---------------------------------------------------------------------------------
async def test_concurrent_greedy_streams_answer_as_each_alone(
    runtime: TransformersRuntime, gpt2: Path
) -> None:
    engine = batcher(runtime)
    try:
        alone = [await engine.start(runtime.prompt_ids(p), greedy(40)).text() for p in PROMPTS]
        streams = [engine.start(runtime.prompt_ids(p), greedy(40)) for p in PROMPTS]
        together = await asyncio.gather(*(s.text() for s in streams))
    finally:
        engine.close()
    assert together == alone
    assert len(set(alone)) == len(alone)
    assert alone[0] == reference(gpt2, PROMPTS[0], 40)
    assert all(s.completion_tokens == 40 and s.finish_reason == LENGTH for s in streams)


async def test_sequences_join_and_leave_the_running_batch(runtime: TransformersRuntime) -> None:
    """Streams of different lengths started at different times: each still answers as alone."""
    engine = batcher(runtime)
    try:
        lengths = [5, 30, 12, 45, 3, 20]
        alone = [
            await engine.start(runtime.prompt_ids(p), greedy(n)).text()
            for p, n in zip(PROMPTS, lengths, strict=False)
        ]
        streams: list[TokenStream] = []
        for prompt, n in zip(PROMPTS, lengths, strict=False):
            streams.append(engine.start(runtime.prompt_ids(prompt), greedy(n)))
            await asyncio.sleep(0.002)  # the next one joins a batch already running
        staggered = await asyncio.gather(*(s.text() for s in streams))
    finally:
        engine.close()
    assert staggered == alone


async def test_the_same_seed_gives_the_same_answer(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime)
    ids = runtime.prompt_ids("hello world")
    try:
        first = await engine.start(ids, Sampling(max_tokens=30, temperature=1.0, seed=7)).text()
        beside = [engine.start(ids, Sampling(max_tokens=30, temperature=1.0, seed=s)) for s in (7, 8, 9)]
        again, *others = await asyncio.gather(*(s.text() for s in beside))
        narrow = await engine.start(ids, Sampling(max_tokens=30, temperature=1.0, seed=7, top_p=0.01)).text()
        greedy_text = await engine.start(ids, greedy(30)).text()
    finally:
        engine.close()
    assert again == first  # decoded beside other sampled sequences, still the same draw
    assert first not in others
    assert narrow == greedy_text  # top_p that keeps one token is greedy


async def test_a_stop_string_ends_the_text_before_it(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime)
    ids = runtime.prompt_ids("the quick brown fox")
    try:
        full = await engine.start(ids, greedy(40)).text()
        stop = full[10:14]
        stream = engine.start(ids, greedy(40, stop=(stop, "never in the text")))
        pieces = [delta.text async for delta in stream]
    finally:
        engine.close()
    assert "".join(pieces) == full[: full.index(stop)]
    assert stream.finish_reason == STOP
    assert stop not in "".join(pieces)


async def test_the_end_token_ends_a_sequence_unless_ignored(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime)
    ids = runtime.prompt_ids("hello world")
    try:
        whole = await engine.start(ids, greedy(6)).text()
        first = runtime.prompt_ids(whole)[0]  # make the first token this engine's end token
        engine._eos = {first}
        ended = engine.start(ids, greedy(6))
        assert await ended.text() == "" and ended.finish_reason == STOP and ended.completion_tokens == 1
        going = engine.start(ids, greedy(6, ignore_eos=True))
        assert await going.text() == whole and going.finish_reason == LENGTH
    finally:
        engine.close()


async def test_a_cancelled_stream_frees_its_slot_at_once(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime, max_sequences=1)
    try:
        long = engine.start(runtime.prompt_ids("hello"), greedy(60))
        await long.__anext__()
        long.cancel()
        short = engine.start(runtime.prompt_ids("world"), greedy(2))
        assert len(await asyncio.wait_for(short.text(), 10)) > 0
        assert long.completion_tokens < 60  # it stopped when cancelled
        await asyncio.sleep(0.05)
        assert engine.inflight == 0
    finally:
        engine.close()


async def test_waiting_sequences_are_bounded(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime, BatchPolicy(max_queue=1), max_sequences=1)
    ids = runtime.prompt_ids("hello")
    try:
        streams = [engine.start(ids, greedy(60))]
        with pytest.raises(Overloaded) as caught:
            for _ in range(2):  # the first may wait while the other runs; the next cannot
                streams.append(engine.start(ids, greedy(60)))
        assert caught.value.retry_after == 1.0
    finally:
        for stream in streams:
            stream.cancel()
        engine.close()


async def test_prompts_and_completions_must_fit_the_context(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime)
    try:
        with pytest.raises(InvalidInput, match="maximum context length is 128 tokens"):
            engine.start(list(range(5, 140)), greedy(1))
        with pytest.raises(InvalidInput, match="max_tokens asks for 200 more"):
            engine.start(runtime.prompt_ids("hello"), greedy(200))
        near_end = engine.start(list(range(5, 125)), Sampling(temperature=0.0))  # the default: what fits
        await near_end.text()
        assert near_end.completion_tokens <= 8
    finally:
        engine.close()


def test_sampling_values_are_checked() -> None:
    for bad in ({"temperature": 3}, {"top_p": 0}, {"max_tokens": 0}, {"stop": ("",)}, {"stop": ("a",) * 5}):
        with pytest.raises(InvalidInput):
            Sampling(**bad)


# ---- what a loaded version says it does ------------------------------------------------------------------
def test_each_version_declares_its_own_task(runtime: TransformersRuntime, tmp_path: Path) -> None:
    generating = runtime.loaded_capabilities()
    assert generating.tasks == {Task.PREDICT, Task.STREAM} and generating.batching is Batching.OWN
    bert = textmodels.bert_classifier(tmp_path / "bert" / "model")
    for task, expected in (("feature-extraction", {Task.PREDICT, Task.EMBED}), (None, {Task.PREDICT})):
        loaded = TransformersRuntime()
        loaded.load(bert.parent, LoadOptions(task=task))
        assert loaded.loaded_capabilities().tasks == expected
        assert loaded.loaded_capabilities().batching is Batching.TOKENS


def test_texts_over_the_maximum_length_are_refused_unless_truncated(tmp_path: Path) -> None:
    bert = textmodels.bert_classifier(tmp_path / "bert" / "model")
    long = " ".join(["fox"] * 200)
    for settings, expected in (({}, None), ({"truncate": True}, [3, 128])):
        loaded = TransformersRuntime()
        loaded.load(bert.parent, LoadOptions(task="feature-extraction", settings=settings))
        if expected is None:
            with pytest.raises(
                InvalidInput, match=r"input 1 has 202 tokens and this model takes at most 128"
            ):
                loaded.count_tokens(["fox", long])
        else:
            assert loaded.count_tokens(["fox", long]) == expected
        assert not loaded.resizable()


def test_chat_messages_use_chatml_when_the_tokenizer_has_no_template(runtime: TransformersRuntime) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    text = (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )
    assert runtime.prompt_ids(messages) == runtime.prompt_ids(text)


# ---- text pieces -------------------------------------------------------------------------------------------
def test_text_tail_holds_back_what_could_start_a_stop_string() -> None:
    pieces = ["Hel", "lo", " wor", "ld", "!"]
    tail = TextTail(lambda ids: "".join(pieces[i] for i in ids), stop=("world",))
    sent = [tail.push(i) for i in range(len(pieces))]
    # the last len("world") - 1 characters wait: they might start "world"
    assert sent[:4] == [("", False), ("H", False), ("ello", False), (" ", True)]


def test_text_tail_waits_for_a_whole_character() -> None:
    data = [b"caf", b"\xc3", b"\xa9!"]  # "café!" with its é split over two tokens

    def decode(ids: Any) -> str:
        return b"".join(data[i] for i in ids).decode("utf-8", errors="replace")

    tail = TextTail(decode, stop=())
    assert [tail.push(i) for i in range(3)] == [("caf", False), ("", False), ("é!", False)]
    cut = TextTail(decode, stop=())
    cut.push(0)
    assert cut.push(1) == ("", False)
    assert cut.flush() == "\ufffd"  # the sequence ended mid-character: as the tokenizer decodes it


async def test_a_tiny_temperature_is_greedy_and_fails_no_one(runtime: TransformersRuntime) -> None:
    engine = batcher(runtime)
    ids = runtime.prompt_ids("hello world")
    try:
        beside = engine.start(runtime.prompt_ids("the lazy dog"), greedy(30))
        tiny = await engine.start(ids, Sampling(max_tokens=20, temperature=1e-300, seed=1)).text()
        assert tiny == await engine.start(ids, greedy(20)).text()
        assert len(await beside.text()) > 0  # decoded beside it, unharmed
    finally:
        engine.close()


async def test_a_failure_while_admitting_fails_those_sequences_not_hangs(
    runtime: TransformersRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = batcher(runtime)
    try:
        monkeypatch.setattr(engine, "_pick", lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
        stream = engine.start(runtime.prompt_ids("hello"), greedy(5))
        with pytest.raises(InferenceFailed, match="generation failed: RuntimeError"):
            await asyncio.wait_for(stream.text(), 10)
        monkeypatch.undo()
        assert len(await engine.start(runtime.prompt_ids("hello"), greedy(5)).text()) > 0  # it goes on
    finally:
        engine.close()


async def test_a_sliding_window_model_decodes_one_at_a_time_as_generate_does(tmp_path: Path) -> None:
    """Its cache is the model's own (sliding layers), never restacked: prompts longer than the window."""
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = textmodels.bpe_tokenizer()
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        sliding_window=8,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    folder = textmodels._quiet_save(MistralForCausalLM(config).eval(), tokenizer, tmp_path / "m" / "model")
    loaded = TransformersRuntime()
    loaded.load(folder.parent, LoadOptions(threads=torch.get_num_threads()))
    engine = batcher(loaded)
    prompt = "the quick brown fox jumps over the lazy dog and the small test of the tokenizer"
    try:
        assert not engine._merges
        streams = [engine.start(loaded.prompt_ids(prompt), greedy(20)) for _ in range(2)]
        texts = await asyncio.gather(*(s.text() for s in streams))
    finally:
        engine.close()
        loaded.unload()
    assert texts == [reference(folder, prompt, 20)] * 2
