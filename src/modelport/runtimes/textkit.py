"""What the text runtimes (transformers, sentence-transformers) share, without importing a framework:
reading a Hugging Face directory's small JSON files, refusing what could run code when loaded, checking
the version's ``runtime`` settings, and planning length-sorted chunks of a merged batch.

Security rules for a Hugging Face directory (``vet``, before anything is stored):
weights must be safetensors (pickle formats can run code when loaded), no config may name code to
import (``auto_map``: transformers would need ``trust_remote_code``, which modelport never turns on), and
a config value naming a file must name one inside the model's folder.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, UnsafeFormat

# never reach a model hub: everything a version needs is in its artifact. Set when the text runtimes are
# imported (at server start), before anything imports transformers, which reads them once
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# files torch.save / pickle write; transformers and sentence-transformers would unpickle them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
SAFETENSORS_HINT = "convert to safetensors: model.save_pretrained(dir, safe_serialization=True)"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
JSON_LIMIT = 1 << 20  # model configs are kilobytes; a larger file is not one (and is not parsed to find out)
LARGE_JSON_LIMIT = 512 << 20  # a tokenizer.json may be tens of megabytes

# a merged batch runs in chunks of rows of similar token length: one long text must not pad many short
# ones. A chunk holds at most CHUNK_TOKENS padded tokens and CHUNK_ROWS rows. Each forward call also costs
# a fixed amount, counted in padded tokens: small on a CPU (where compute grows with the tokens), large on a
# GPU (where launching the layers' kernels dominates a small batch), so a GPU splits a batch far less.
CHUNK_TOKENS = 8192
CHUNK_ROWS = 128
CALL_TOKENS = {"cpu": 16, "cuda": 2048}


def read_json(path: Path, limit: int = JSON_LIMIT) -> Any:
    """A small JSON document's content, or None when the file is not one (cheap: no framework, bounded)."""
    try:
        if path.stat().st_size > limit:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if data.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None


def is_hf_config(data: Any) -> bool:
    """A transformers ``config.json``: a ``model_type`` or ``architectures``; not sentence-transformers'
    own ``config_sentence_transformers.json`` (which has a ``model_type`` too, and a ``__version__``)."""
    if not isinstance(data, dict) or "__version__" in data:
        return False
    model_type, architectures = data.get("model_type"), data.get("architectures")
    return (isinstance(model_type, str) and bool(model_type)) or (
        isinstance(architectures, list)
        and bool(architectures)
        and all(isinstance(a, str) for a in architectures)
    )


def is_modules_json(data: Any) -> bool:
    """sentence-transformers' ``modules.json``: a list of modules, each with its ``type`` and ``path``."""
    return (
        isinstance(data, list)
        and bool(data)
        and all(
            isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path"), str)
            for m in data
        )
    )


def beside_modules_json(config: Path) -> bool:
    """A ``config.json`` that belongs to a sentence-transformers model: its ``modules.json`` sits in the
    same folder or the one above (modules of older models live in subfolders such as ``0_Transformer``)."""
    for folder in (config.parent, config.parent.parent):
        modules = folder / "modules.json"
        if modules.is_file() and is_modules_json(read_json(modules)):
            return True
    return False


def shown(path: Path, root: Path) -> str:
    """A path as the pusher knows it: relative to the artifact, never the server's own directories."""
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return path.name


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def refuse_code(files: Iterable[Path], root: Path) -> None:
    """Everything in a Hugging Face artifact that would make a library run or read what it must not:
    pickled weights, configs naming code to import, config values naming files outside the model."""
    files = list(files)
    refuse_pickled_weights(files, root)
    refuse_remote_code(files, root)
    refuse_outside_paths(files, root)


def check_encoder(folder: Path, config: dict[str, Any], root: Path) -> None:
    """A transformers model folder that can load: a built-in model type, safetensors, a tokenizer."""
    check_builtin(config)
    require_safetensors(folder, root)
    require_tokenizer(folder, root)


def refuse_pickled_weights(files: Iterable[Path], root: Path) -> None:
    """Weights in a pickle format can run code when loaded: refused, with the way to convert them."""
    files = list(files)
    pickled = [p for p in files if p.name.lower().endswith(PICKLE_SUFFIXES)]
    if not pickled:
        return
    names = ", ".join(shown(p, root) for p in pickled[:5])
    if any(p.name.endswith(".safetensors") for p in files):
        raise UnsafeFormat(
            f"the artifact holds safetensors weights and pickled ones too ({names}); pickle files can run "
            "code when loaded: remove them and push the safetensors weights only"
        )
    raise UnsafeFormat(
        f"weights in a pickle format ({names}) can run code when loaded and are refused; {SAFETENSORS_HINT}"
    )


def refuse_remote_code(files: Iterable[Path], root: Path) -> None:
    """A config naming Python classes to import from the artifact (``auto_map``) needs
    ``trust_remote_code``, which would run the artifact's code: refused. Any JSON file of the artifact
    is checked, whatever its size (a large one is parsed only when it mentions the key at all)."""
    for path in files:
        if path.suffix != ".json" or not _mentions(path, b'"auto_map"'):
            continue
        data = read_json(path, limit=LARGE_JSON_LIMIT)
        if data is None or (isinstance(data, dict) and "auto_map" in data):
            raise UnsafeFormat(
                f"{shown(path, root)} has an auto_map: the model needs its own Python code "
                "(trust_remote_code), which modelport never runs; push a model whose architecture is "
                "built into transformers"
            )


# config keys whose value the libraries open as a file or folder (tokenizer files, sentence-transformers'
# model/tokenizer arguments, sharded weights): each must name a file inside the model's own folder
PATH_KEYS = ("_file", "_files", "_path", "_dir", "subfolder", "weight_map")


def refuse_outside_paths(files: Iterable[Path], root: Path) -> None:
    """A config value that names a file must be a plain name beside it: no directory part, no ``..``, no
    absolute path, no URL (a tokenizer_config.json ``"vocab_file": "/etc/passwd"`` would read that file)."""
    for path in files:
        if path.suffix != ".json" or path.name == "tokenizer.json":  # tokenizer.json holds vocabularies
            continue
        # read whatever its size: padding must not hide a path past the small-config limit
        stack: list[tuple[str, Any]] = [("", read_json(path, limit=LARGE_JSON_LIMIT))]
        while stack:
            key, value = stack.pop()
            if isinstance(value, dict) and key == "weight_map":  # tensor name -> shard file
                stack.extend((key, shard) for shard in value.values())
            elif isinstance(value, dict):
                stack.extend(value.items())
            elif isinstance(value, list):
                stack.extend((key, item) for item in value)
            elif (
                isinstance(value, str)
                and key.endswith(PATH_KEYS)
                and not key.endswith("name_or_path")  # where the model came from: a record, never opened
                and not _plain_name(value)
            ):
                raise UnsafeFormat(
                    f"{shown(path, root)} names {value[:100]!r} for {key!r}: files a model reads must sit "
                    "in its own folder, named without a directory"
                )


def _plain_name(value: str) -> bool:
    return value not in ("", ".", "..") and not any(c in value for c in "/\\:") and "\x00" not in value


def _mentions(path: Path, needle: bytes, block: int = 1 << 20) -> bool:
    """Whether the file's bytes hold ``needle``, read a block at a time."""
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(block):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle) :]
    return False


def require_safetensors(folder: Path, root: Path) -> None:
    if not any(p.name.endswith(".safetensors") for p in folder.iterdir() if p.is_file()):
        raise InvalidInput(
            f"no *.safetensors weights in {shown(folder, root)!r}; save the model with "
            "model.save_pretrained(dir, safe_serialization=True)"
        )


def require_tokenizer(folder: Path, root: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidInput(
            f"no tokenizer in {shown(folder, root)!r} (tokenizer.json or tokenizer_config.json); "
            "save it beside the model: tokenizer.save_pretrained(dir)"
        )


# ---- the version's ``runtime`` settings ---------------------------------------------------------------
Check = Callable[[str, Any], Any]


def choice(*allowed: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in allowed:
            raise InvalidInput(
                f"runtime setting {name!r} must be one of {', '.join(allowed)}", field="runtime"
            )
        return value

    return check


def boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise InvalidInput(f"runtime setting {name!r} must be true or false", field="runtime")
    return value


def integer(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(
                f"runtime setting {name!r} must be an integer from {low} to {high}", field="runtime"
            )
        return value

    return check


def check_settings(settings: Mapping[str, Any], known: Mapping[str, Check], what: str) -> dict[str, Any]:
    """``settings`` checked against ``known`` (name -> check); unknown names are refused."""
    if not isinstance(settings, Mapping):
        raise InvalidInput("runtime settings must be an object", field="runtime")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        accepted = ", ".join(sorted(known)) if known else "none"
        raise InvalidInput(
            f"unknown runtime setting(s) {unknown} for {what}; accepted: {accepted}", field="runtime"
        )
    return {name: known[name](name, value) for name, value in settings.items()}


# ---- batches of texts ---------------------------------------------------------------------------------
# settings of every text-embedding runtime: refuse (400) or cut texts over the model's maximum length, and
# whether vectors may be cut to fewer dimensions (OpenAI's ``dimensions``; for Matryoshka-trained models)
EMBEDDING_SETTINGS: dict[str, Check] = {"truncate": boolean, "matryoshka": boolean}


class TextEmbeddings:
    """What the text-embedding runtimes answer for ``/v1/embeddings`` beyond their vectors (the
    ``EmbeddingRuntime`` methods): token counts, whether vectors may be cut, and texts of token ids.
    A runtime sets ``_settings``, ``_tokenizing`` and ``_max_length``, and says where its tokenizer is."""

    _settings: dict[str, Any]
    _tokenizing: threading.Lock
    _max_length: int | None

    def _text_tokenizer(self) -> Any:
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        truncate = bool(self._settings.get("truncate"))
        return count_tokens(self._text_tokenizer(), self._tokenizing, texts, self._max_length, truncate)

    def resizable(self) -> bool:
        return bool(self._settings.get("matryoshka"))

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return decode_ids(self._text_tokenizer(), self._tokenizing, ids)


def count_tokens(
    tokenizer: Any, lock: threading.Lock, texts: Sequence[str], longest: int | None, truncate: bool
) -> list[int]:
    """Tokens of each text (special ones included). A text over ``longest`` is refused with a 400 that
    says so, unless the version truncates: then it counts as ``longest``."""
    with lock:
        encoded = tokenizer(
            list(texts), return_attention_mask=False, return_token_type_ids=False, verbose=False
        )
    counts = [len(ids) for ids in encoded["input_ids"]]
    if not longest:
        return counts
    over = next((i for i, n in enumerate(counts) if n > longest), None)
    if over is not None and not truncate:
        raise InvalidInput(
            f"input {over} has {counts[over]} tokens and this model takes at most {longest}; shorten it, "
            'or configure the version with runtime {"truncate": true}',
            field="input",
        )
    return [min(n, longest) for n in counts]


def decode_ids(tokenizer: Any, lock: threading.Lock, ids: Sequence[Sequence[int]]) -> list[str]:
    """Token ids back to text (special tokens left out), each id checked against the vocabulary."""
    size = len(tokenizer)
    if any(not 0 <= i < size for row in ids for i in row):
        raise InvalidInput(f"token ids must be from 0 to {size - 1}", field="input")
    with lock:
        return [
            str(text) for text in tokenizer.batch_decode([list(row) for row in ids], skip_special_tokens=True)
        ]


def plan_chunks(
    lengths: Sequence[int],
    call_tokens: float = CALL_TOKENS["cpu"],
    max_tokens: int = CHUNK_TOKENS,
    max_rows: int = CHUNK_ROWS,
) -> list[list[int]]:
    """Row indices grouped into chunks of similar length, longest first, each padded to its own longest
    row: the grouping of the length-sorted rows that costs least, each chunk costing ``call_tokens`` plus
    its padded tokens (dynamic programming over where chunks start; at most ``max_rows`` candidates each)."""
    count = len(lengths)
    order = sorted(range(count), key=lambda i: -lengths[i])
    longest = np.maximum(np.asarray([lengths[i] for i in order], dtype=np.float64), 1.0)
    best = np.zeros(count + 1)  # best[end]: the least cost of rows order[:end]
    start_of = np.zeros(count + 1, dtype=np.int64)  # where the last chunk of that grouping starts
    for end in range(1, count + 1):
        low = max(0, end - max_rows)
        rows = end - np.arange(low, end)
        padded = rows * longest[low:end]  # sorted: a chunk's first row is its longest
        costs = np.where((padded <= max_tokens) | (rows == 1), best[low:end] + call_tokens + padded, np.inf)
        pick = int(np.argmin(costs))
        best[end], start_of[end] = costs[pick], low + pick
    chunks: list[list[int]] = []
    end = count
    while end > 0:
        start = int(start_of[end])
        chunks.append(order[start:end])
        end = start
    return chunks[::-1]


def call_tokens(device_type: str) -> float:
    return CALL_TOKENS.get(device_type, CALL_TOKENS["cuda"])


def pad_right(rows: Sequence[Sequence[int]], value: int) -> np.ndarray:
    """Token rows as one int64 matrix, padded on the right: real tokens keep positions 0..n-1, so a row's
    answer does not depend on what it is batched with."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def sane_length(*candidates: Any) -> int | None:
    """The smallest real limit among a tokenizer's ``model_max_length`` (a huge sentinel when unset) and a
    config's position count."""
    limits = [
        int(c) for c in candidates if isinstance(c, int) and not isinstance(c, bool) and 0 < c < 1_000_000
    ]
    return min(limits) if limits else None


def check_builtin(config: dict[str, Any]) -> None:
    """A model type transformers does not ship would need the artifact's own code: refused."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UnsafeFormat(
            f"model_type {model_type!r} is not built into transformers: loading it would run the "
            "artifact's own code (trust_remote_code), which modelport never does"
        )
    if config.get("is_encoder_decoder"):
        raise InvalidInput(f"encoder-decoder models ({model_type}) are not served by this runtime yet")
