"""OpenAI-compatible wire format: requests, answers, stream chunks and their SSE framing; framework-free.

Requests are read with orjson and checked by the pydantic models below, which also document them in
``/openapi.json``. Parameters that would change the answer in ways this server does not implement (tools,
log probabilities, several choices, penalties, ...) are refused by name rather than ignored; the harmless
values of the same parameters are accepted, as are parameters unknown here.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.errors import InvalidInput
from modelport.runtimes.streams import Sampling

MAX_INPUTS = 2048  # texts per embeddings request, and prompts per completions request, as OpenAI allows
DONE = b"data: [DONE]\n\n"
# what an embedding model is listed as, and what a generating one is
EMBEDDINGS, CHAT = "embeddings", "chat"


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # parameters unknown here are accepted and ignored

    model: str = Field(description="`name`, `name:alias` or `name:N` (a version number)")
    user: str | None = Field(None, description="accepted and ignored")


class EmbeddingRequest(OpenAIRequest):
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text, a list of texts, the model's token ids of one text, or a list of such lists"
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as little-endian float32 bytes"
    )
    dimensions: int | None = Field(
        None, ge=1, description="keep the first N values, normalised again (Matryoshka versions only)"
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _Generating(OpenAIRequest):
    max_tokens: int | None = Field(None, ge=1, description="default: the version's max_new_tokens")
    temperature: float | None = Field(None, description="0 to 2; 0 is greedy (default 1)")
    top_p: float | None = Field(None, description="above 0, at most 1 (default 1)")
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, description="the same seed, the same answer")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end the text")
    n: int | None = Field(None, description="only 1")
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(False, description="vLLM's extension: go on past the end token, to max_tokens")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="only text")
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class ChatRequest(_Generating):
    messages: list[ChatMessage] = Field(description="system, user and assistant messages")
    max_completion_tokens: int | None = Field(None, ge=1, description="wins over max_tokens")


class CompletionRequest(_Generating):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text, token ids, or a list of either: one choice each"
    )


# ---- answers, as documented (they are written as plain dicts) --------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the model was created, Unix seconds")
    owned_by: str = "modelport"
    version: int = Field(description="the version its default route serves now")
    capabilities: list[Literal["embeddings", "chat"]]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str = Field(description="`name:version`: the version that answered")
    usage: Usage


class ChatChoice(BaseModel):
    index: int
    message: dict[str, str]
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(description="`name:version`: the version that answered")
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str = Field(description="`name:version`: the version that answered")
    choices: list[CompletionChoice]
    usage: Usage


DOCUMENTED: tuple[type[BaseModel], ...] = (
    EmbeddingRequest,
    ChatRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    EmbeddingList,
    ChatCompletion,
    Completion,
)

# ---- decoding ------------------------------------------------------------------------------------------
R = TypeVar("R", bound="OpenAIRequest")
Harmless = Callable[[Any], bool]
Refused = Mapping[str, Harmless]
REFUSED: dict[str, Harmless] = {  # parameters that change the answer, and the values that do not
    "n": lambda v: v is None or (v == 1 and v is not True),
    "tools": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none"),
    "functions": lambda v: not v,
    "function_call": lambda v: v in (None, "none"),
    "top_logprobs": lambda v: v in (None, 0) and v is not False,
    "response_format": lambda v: v is None or v == {"type": "text"},
    "presence_penalty": lambda v: v is None or (v == 0 and not isinstance(v, bool)),
    "frequency_penalty": lambda v: v is None or (v == 0 and not isinstance(v, bool)),
    "logit_bias": lambda v: not v,
    "audio": lambda v: v is None,
    "modalities": lambda v: v in (None, ["text"]),
    "prediction": lambda v: v is None,
}
CHAT_REFUSED = {**REFUSED, "logprobs": lambda v: v in (None, False)}
COMPLETION_REFUSED = {
    **REFUSED,
    "logprobs": lambda v: v is None,
    "echo": lambda v: v in (None, False),
    "best_of": lambda v: v is None or (v == 1 and v is not True),
    "suffix": lambda v: v in (None, ""),
}


def decode(model: type[R], body: bytes, refused: Refused) -> R:
    """The request in ``body`` as ``model``, or InvalidInput naming the parameter at fault."""
    try:
        raw = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidInput("the body must be a JSON object")
    for name, harmless in refused.items():
        if name in raw and not harmless(raw[name]):
            shown = repr(raw[name]) if len(repr(raw[name])) <= 60 else repr(raw[name])[:57] + "..."
            why = "one choice per request is supported (n=1)" if name == "n" else "is not supported here"
            raise InvalidInput(f"{name}={shown}: {why}", field=name)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _param(first["loc"])
        message = SHAPES.get(where or "", first["msg"]) if len(first["loc"]) > 1 else first["msg"]
        raise InvalidInput(f"{where or 'body'}: {message}", field=where) from None


def _param(loc: Sequence[int | str]) -> str | None:
    """The parameter at fault, as ``messages.0.content``: pydantic's location without the names of the
    union members it tried (``str``, ``list[int]``, ``TextPart``)."""
    parts: list[str] = []
    for part in loc:
        if (isinstance(part, str) and not (part.isidentifier() and part.islower())) or part in _TAGS:
            break
        parts.append(str(part))
    return ".".join(parts) or None


_TAGS = frozenset({"str", "int", "float", "bool"})
SHAPES = {  # what a parameter of several shapes takes, said instead of what the last one tried wanted
    "input": "must be a text, a list of texts, a list of token ids or a list of such lists",
    "prompt": "must be a text, a list of texts, a list of token ids or a list of such lists",
    "stop": "must be a string or a list of strings",
}


def split_model(value: str) -> tuple[str, str | None]:
    """``name``, ``name:alias`` or ``name:N``: the name and the reference (None: the default route).
    Names hold no colon: the last one separates."""
    name, colon, ref = value.rpartition(":")
    return (name, ref) if colon else (value, None)


def texts_to_embed(request: EmbeddingRequest) -> list[str] | list[list[int]]:
    """The texts of an embeddings request, or its token ids (the model's own tokenizer's), one list each."""
    given = request.input
    items: list[Any] = [given] if isinstance(given, str) else list(given)
    if items and all(isinstance(t, int) for t in items):
        items = [items]  # one text's token ids
    if not items:
        raise InvalidInput("input must not be empty", field="input")
    if len(items) > MAX_INPUTS:
        raise InvalidInput(f"input: at most {MAX_INPUTS} texts per request", field="input")
    if any(not t for t in items):
        raise InvalidInput("input must not hold an empty string or an empty list of token ids", field="input")
    return items


def sampling(request: _Generating, max_tokens: int | None) -> Sampling:
    stop = request.stop
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        seed=request.seed,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        ignore_eos=request.ignore_eos,
    )


def chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The messages as ``role``/``content`` texts (text parts joined by newlines; ``developer`` is the
    newer name of ``system``)."""
    if not request.messages:
        raise InvalidInput("messages must hold at least one message", field="messages")
    out = []
    for i, message in enumerate(request.messages):
        content = message.content
        if content is None:
            raise InvalidInput(f"messages.{i}.content: a text is required", field=f"messages.{i}.content")
        if not isinstance(content, str):
            for j, part in enumerate(content):
                if part.type != "text" or part.text is None:
                    where = f"messages.{i}.content.{j}"
                    raise InvalidInput(f"{where}: only text parts are supported", field=where)
            content = "\n".join(str(part.text) for part in content)
        role = "system" if message.role == "developer" else message.role
        out.append({"role": role, "content": content})
    return out


def prompts(request: CompletionRequest) -> list[str | list[int]]:
    given = request.prompt
    if isinstance(given, str):
        return [given]
    if not given:
        raise InvalidInput("prompt must not be empty", field="prompt")
    out: list[str | list[int]] = (
        [[t for t in given if isinstance(t, int)]]
        if all(isinstance(t, int) for t in given)
        else [p for p in given if isinstance(p, str | list)]
    )
    if len(out) > MAX_INPUTS:
        raise InvalidInput(f"prompt: at most {MAX_INPUTS} prompts per request", field="prompt")
    if any(isinstance(p, list) and any(t < 0 for t in p) for p in out):
        raise InvalidInput("prompt: token ids are never negative", field="prompt")
    return out


# ---- encoding ------------------------------------------------------------------------------------------
def dumps(body: object) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def event(body: object) -> bytes:
    """One server-sent event."""
    return b"data: " + dumps(body) + b"\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int | None = None) -> dict[str, int]:
    if completion_tokens is None:  # embeddings
        return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def fit_dimensions(vectors: np.ndarray, dimensions: int | None, resizable: bool) -> np.ndarray:
    """Cut to the first ``dimensions`` values and normalise again (Matryoshka versions)."""
    width = vectors.shape[1]
    if dimensions is None or dimensions == width:
        return vectors
    if not resizable:
        raise InvalidInput(
            "dimensions: this model does not allow fewer dimensions (its version is not Matryoshka)",
            field="dimensions",
        )
    if dimensions > width:
        raise InvalidInput(f"dimensions: this model's vectors have {width} values", field="dimensions")
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.where(norms == 0, 1, norms)).astype(np.float32)


def embedding_list(model: str, vectors: np.ndarray, encoding: str, tokens: int) -> bytes:
    if encoding == "base64":
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        data: list[Any] = [base64.b64encode(row.tobytes()).decode() for row in rows]
    else:
        data = list(np.ascontiguousarray(vectors, dtype=np.float32))
    return dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
            "model": model,
            "usage": usage(tokens),
        }
    )


class Answer:
    """The answer of one generation request (chat or completion), whole or as stream chunks."""

    def __init__(self, chat: bool, model: str, include_usage: bool = False) -> None:
        self.chat = chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.object = "chat.completion" if chat else "text_completion"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, texts: Sequence[str], reasons: Sequence[str | None], used: dict[str, int]) -> bytes:
        if self.chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reason,
                    "logprobs": None,
                }
                for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
            ]
        else:
            choices = [
                {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))
            ]
        return dumps({**self._head(self.object), "choices": choices, "usage": used})

    def chunk(self, index: int, text: str | None = None, finish_reason: str | None = None) -> bytes:
        """A stream chunk for choice ``index``: its first (``text`` None: the role), more text, or its
        end (``finish_reason``)."""
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            if text is None and finish_reason is None:
                choice["delta"] = {"role": "assistant", "content": ""}
            else:
                choice["delta"] = {} if finish_reason is not None else {"content": text}
        else:
            choice["text"] = text or ""
        choice["logprobs"] = None
        choice["finish_reason"] = finish_reason
        body = {
            **self._head("chat.completion.chunk" if self.chat else "text_completion"),
            "choices": [choice],
        }
        if self.include_usage:
            body["usage"] = None
        return event(body)

    def usage_chunk(self, used: dict[str, int]) -> bytes:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return event({**self._head(kind), "choices": [], "usage": used})
