"""The demo's ``chat`` model: a small GPT-2 and a byte-level BPE tokenizer with a chat template, trained
for a time budget (fixed seed, CPU) on dialogues built from text that ships with Python: "What does
json.dumps do?" answered by the first sentence of its docstring, the Zen of Python, a few greetings.

It answers roughly; what matters is that the path is the real one: a ``save_pretrained`` directory
(safetensors, tokenizer.json, tokenizer_config.json with its ``chat_template``) pushed as a tar archive,
like a user's instruct model. The directory is cached per recipe and library versions, so a second
``modelport serve --demo`` starts without training. torch and transformers are imported only here.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

SECONDS_ENV = "MODELPORT_DEMO_CHAT_SECONDS"  # the training time budget, in seconds
CACHE_ENV = "MODELPORT_DEMO_CACHE"  # the folder holding one trained directory per recipe
DEFAULT_SECONDS = 90.0
SEED = 0
END, ROLES = "<|end|>", ("system", "user", "assistant")
SPECIAL_TOKENS = [END, *(f"<|{role}|>" for role in ROLES)]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('roles are system, user and assistant') }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
RECIPE: dict[str, Any] = {
    "vocab_size": 3000,
    "n_positions": 256,
    "n_embd": 128,
    "n_layer": 4,
    "n_head": 4,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "warmup_steps": 30,
    "min_steps": 30,  # never an untrained model, however slow the machine
    "max_steps": 3000,  # a fast machine stops early
    "seed": SEED,
}
MODULES = (  # whose public functions' docstrings answer questions (a space-separated list)
    "builtins base64 bisect collections copy csv datetime difflib fnmatch functools glob gzip hashlib heapq "
    "html itertools json math os os.path pathlib random re shlex shutil statistics string struct subprocess "
    "tarfile tempfile textwrap time urllib.parse uuid zipfile"
)
FEATURED = ("json.dumps", "json.loads", "os.path.join", "len", "sorted", "str.split", "math.sqrt", "re.sub")
TYPES = (str, list, dict, set, tuple, int, float)
QUESTIONS = ("What does {} do?", "What is {} for?", "Explain {}.", "{}?")
GREETING = "Hello! I am the modelport demo model. Ask me what a Python function does, like json.dumps."
SMALL_TALK = {
    "Hello": GREETING,
    "Hi!": GREETING,
    "Who are you?": "I am a small GPT-2 trained for a minute on Python's docstrings by modelport's demo.",
    "What can you do?": "I can tell you roughly what a Python function does. Ask me about os.path.join.",
    "Thanks!": "You are welcome.",
}
SYSTEM = "You are a helpful assistant that knows the Python standard library."


def seconds_budget() -> float:
    """The training time budget: ``MODELPORT_DEMO_CHAT_SECONDS`` or 90 s."""
    raw = os.environ.get(SECONDS_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_SECONDS
    except ValueError:
        raise ValueError(f"{SECONDS_ENV} must be a number of seconds, not {raw!r}") from None
    if not 0 < seconds < 1e6:
        raise ValueError(f"{SECONDS_ENV} must be a positive number of seconds, not {raw!r}")
    return seconds


def cache_root() -> Path:
    """``MODELPORT_DEMO_CACHE``, else ``$XDG_CACHE_HOME/modelport/demo-chat`` (``~/.cache`` by default)."""
    if override := os.environ.get(CACHE_ENV):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modelport" / "demo-chat"


def recipe_key(seconds: float) -> str:
    """What the trained directory depends on: this module's code, the budget and the library versions."""
    parts = {
        "recipe": RECIPE,
        "seconds": seconds,
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "transformers", "tokenizers", "safetensors")},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def chat_model_dir(seconds: float | None = None, cache: Path | None = None) -> Path:
    """The trained directory for this recipe, from the cache or trained now (into a temporary folder
    beside it, renamed into place when complete)."""
    seconds = seconds_budget() if seconds is None else seconds
    root = cache_root() if cache is None else cache
    final = root / recipe_key(seconds)
    if complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f"training the demo chat model for {seconds:g} s (once; cached in {final}) ...\n")
    scratch = Path(tempfile.mkdtemp(prefix=".training-", dir=root))
    try:
        report = train(scratch, seconds)
        try:
            scratch.rename(final)
        except OSError:  # another process finished first: keep its directory
            if not complete(final):
                raise RuntimeError(f"{final} is not a complete model directory: delete it") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stderr.write(f"demo chat model: {report['steps']} steps, final loss {report['final_loss']:.2f}\n")
    return final


def complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def chat_archive(d: Path) -> Path:
    """The demo chat model as a tar of its directory (what a user would push)."""
    path = d / "chat.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(chat_model_dir(), arcname="chat")
    return path


# ---- the corpus ---------------------------------------------------------------------------------------
def first_sentence(doc: str | None, limit: int = 240) -> str | None:
    """A docstring's first sentence (its first paragraph when shorter), without a signature line."""
    if not doc:
        return None
    paragraphs = [" ".join(p.split()) for p in doc.strip().split("\n\n")]
    paragraphs = [p for p in paragraphs if p and not re.match(r"^[\w.]+\(.*\)( --?> .*)?$", p)]
    if not paragraphs or len(paragraphs[0]) < 12:
        return None
    text = paragraphs[0]
    match = re.search(r"(?<=[a-z)`'\"])(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    text = text[: match.start() + 1] if match else text
    return text if len(text) <= limit else text[: text.rfind(" ", 0, limit)] + " ..."


def docstring_answers() -> dict[str, str]:
    """``module.function`` (and ``str.split``-style methods) -> the first sentence of its docstring."""
    found: dict[str, str] = {}
    for module_name in MODULES.split():
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        prefix = "" if module_name == "builtins" else module_name + "."
        for name in sorted(public):
            obj = getattr(module, name, None)
            if callable(obj) and not (isinstance(obj, type) and issubclass(obj, BaseException)):
                answer = first_sentence(getattr(obj, "__doc__", None))
                if answer and not name.isupper():
                    found[prefix + name] = answer
    for kind in TYPES:
        for name in sorted(n for n in vars(kind) if not n.startswith("_")):
            if answer := first_sentence(getattr(getattr(kind, name), "__doc__", None)):
                found[f"{kind.__name__}.{name}"] = answer
    return found


def zen_of_python() -> list[str]:
    """The Zen of Python, read from the ``this`` module's source (importing it would print it)."""
    spec = importlib.util.find_spec("this")
    if spec is None or spec.origin is None:
        return []
    for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
        value = (
            node.value.value
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            else None
        )
        if isinstance(value, str) and len(value) > 200:  # the rot13 text
            return [line for line in codecs.decode(value, "rot13").splitlines()[2:] if line.strip()]
    return []


def dialogues() -> list[list[dict[str, str]]]:
    """Every training conversation, in a fixed order."""
    rng, answers = random.Random(SEED), docstring_answers()
    pairs = [(rng.choice(QUESTIONS).format(n), a) for n, a in answers.items()]
    pairs += [(QUESTIONS[0].format(n), a) for n, a in answers.items() if n.count(".") == 1]  # module.name
    zen = zen_of_python()
    for line in zen:  # a question for each of its long words
        words = {w.lower() for w in re.findall(r"[A-Za-z]{5,}", line)} - {"better", "should", "there"}
        pairs += [(f"What does the Zen of Python say about {w}?", line) for w in sorted(words)]
    if zen:
        pairs += [("What is the Zen of Python?", " ".join(zen[:3]))] * 8
        pairs += [("Recite the Zen of Python.", " ".join(zen[:5]))] * 8
    pairs += [(q, a) for q, a in SMALL_TALK.items()] * 12
    pairs += [(f"What is a {t.__name__}?", answers[t.__name__]) for t in TYPES if t.__name__ in answers] * 4
    pairs += [(q.format(n), answers[n]) for n in FEATURED if n in answers for q in QUESTIONS] * 3
    talks = []
    for question, answer in pairs:
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        talks.append([{"role": "system", "content": SYSTEM}, *turns] if rng.random() < 0.2 else turns)
    return talks


# ---- tokenizer, model, training -----------------------------------------------------------------------
def make_tokenizer(texts: list[str]) -> Any:
    """A byte-level BPE trained on ``texts``, with the chat's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END,
        pad_token=END,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=RECIPE["n_positions"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def batches(rows: list[list[int]], size: int, rng: random.Random) -> Iterator[list[list[int]]]:
    """Endless shuffled batches of rows of similar length (little padding)."""
    while True:
        order = rng.sample(range(len(rows)), len(rows))
        groups = [
            sorted(order[i : i + size * 16], key=lambda r: len(rows[r]))
            for i in range(0, len(rows), size * 16)
        ]
        chunks = [group[i : i + size] for group in groups for i in range(0, len(group), size)]
        for chunk in rng.sample(chunks, len(chunks)):
            yield [rows[r] for r in chunk]


def train(folder: Path, seconds: float) -> dict[str, Any]:
    """Train the tokenizer, then the model for ``seconds`` (or ``max_steps``, if sooner), on the dialogues
    rendered with the chat template; ``save_pretrained`` both into ``folder``."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    talks = dialogues()
    tokenizer = make_tokenizer([turn["content"] for talk in talks for turn in talk])
    rendered = [tokenizer.apply_chat_template(talk, tokenize=False) for talk in talks]
    rows = tokenizer(rendered, truncation=True, max_length=RECIPE["n_positions"])["input_ids"]
    end, reply = tokenizer.convert_tokens_to_ids([END, "<|assistant|>"])
    options: dict[str, Any] = {key: RECIPE[key] for key in ("n_positions", "n_embd", "n_layer", "n_head")}
    options |= dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"), 0.0)  # no dropout: memorise
    options |= dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id"), end)
    config = GPT2Config(vocab_size=len(tokenizer), **options)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # not a word about the loss type it picks
    losses: list[float] = []
    start = time.monotonic()
    try:
        with torch.random.fork_rng(devices=[]):  # the fixed seed leaves the process's own RNG alone
            torch.manual_seed(SEED)
            model = GPT2LMHeadModel(config).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["learning_rate"], weight_decay=0.01)
            for batch in batches(rows, RECIPE["batch_size"], random.Random(SEED)):
                done = max((time.monotonic() - start) / seconds, len(losses) / RECIPE["max_steps"])
                if done >= 1 and len(losses) >= RECIPE["min_steps"]:
                    break
                width = max(len(row) for row in batch)
                ids = torch.tensor([row + [end] * (width - len(row)) for row in batch])
                mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch])
                # learn the replies: the tokens after <|assistant|>, up to and with <|end|>
                prompt = ids.eq(reply).cumsum(1).eq(0) | ids.eq(reply)
                labels = ids.masked_fill(prompt | mask.eq(0), -100)
                warm = min(1.0, (len(losses) + 1) / RECIPE["warmup_steps"])
                for group in optimizer.param_groups:  # warm-up, then cosine decay over the budget
                    group["lr"] = (
                        RECIPE["learning_rate"] * warm * max(0.5 * (1 + math.cos(math.pi * done)), 0.05)
                    )
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
        model.eval()
        model.generation_config = GenerationConfig(bos_token_id=end, eos_token_id=end, pad_token_id=end)
        logging.disable_progress_bar()
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder, save_jinja_files=False)  # the template in tokenizer_config.json
    finally:
        logging.set_verbosity(verbosity)
    tail = losses[-50:] or [float("nan")]
    report = {
        "seconds": round(time.monotonic() - start, 1),
        "steps": len(losses),
        "conversations": len(rows),
        "final_loss": round(sum(tail) / len(tail), 3),  # the replies' mean loss over the last 50 steps
    }
    (folder / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
