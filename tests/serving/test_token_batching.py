"""The Batcher under a token budget: text requests are bounded by padded tokens as well as rows,
grouped by length (the oldest request always first), and split back exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from modelport.protocol.v2 import decode_request
from modelport.runtimes.base import Tensors, text_array, texts_of
from modelport.serving.batcher import Batcher, BatchPolicy, token_cost


def texts(*items: str) -> Tensors:
    array = np.empty(len(items), dtype=object)
    array[:] = [t.encode() for t in items]
    return {"text": array}


def test_token_cost_estimates_text_and_counts_numbers() -> None:
    assert token_cost(texts("a" * 40, "b"), 2) == (12 + 2, 12)
    assert token_cost({"x": np.zeros((3, 5))}, 3) == (15, 5)


async def test_a_token_budget_bounds_batches_and_groups_by_length() -> None:
    batches: list[list[int]] = []

    def predict(inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        lengths = [len(t) for t in texts_of(inputs, "text")]
        batches.append(lengths)
        return {"length": np.asarray(lengths), "echo": text_array(texts_of(inputs, "text"))}

    policy = BatchPolicy(max_batch_size=8, max_delay=0.05, max_batch_tokens=60, tokens=True)
    with ThreadPoolExecutor(1) as pool:
        batcher = Batcher(predict, pool, policy)
        # a long text first (the oldest goes first), then short and long ones interleaved
        sizes = [200, 4, 200, 8, 4, 200, 8, 4, 4, 8]
        sent = ["w" * n for n in sizes]
        results = await asyncio.gather(*(batcher.submit(texts(s)) for s in sent))
        batcher.close()
    assert [r["echo"][0].decode() for r in results] == sent  # every answer went back to its request
    assert sorted(n for b in batches for n in b) == sorted(sizes)
    for batch in batches:
        padded = len(batch) * max(n // 4 + 2 for n in batch)
        assert padded <= 60 or len(batch) == 1  # one request over the budget still runs, alone
        assert len(batch) <= 8
        assert not (200 in batch and any(n < 200 for n in batch))  # long ones never pad short ones


def test_bf16_binary_tensors_decode_exactly_as_float32() -> None:
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)  # all exact in bfloat16
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    head = b'{"inputs":[{"name":"x","datatype":"BF16","shape":[2,2],"parameters":{"binary_data_size":8}}]}'
    decoded = decode_request(head + raw, len(head))
    assert decoded.inputs["x"].dtype == np.float32
    assert decoded.inputs["x"].tolist() == values.reshape(2, 2).tolist()
    json_body = b'{"inputs":[{"name":"x","datatype":"BF16","shape":[1],"data":[1.5]}]}'
    assert decode_request(json_body, None).inputs["x"].tolist() == [1.5]
