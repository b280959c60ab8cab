"""Hugging Face transformers models: a model directory (``config.json``, tokenizer files, ``*.safetensors``)
pushed as an archive, served for one task:

- ``text-classification`` (``*ForSequenceClassification``): ``text`` -> ``label`` and ``scores``;
- ``feature-extraction`` (any other encoder): ``text`` -> ``embedding``, pooled (``mean`` or ``cls``) and
  optionally normalised, as the version's ``runtime`` settings say;
- ``text-generation`` (``*ForCausalLM``, ``*LMHeadModel``): ``text`` -> ``text``, the greedy continuation
  of at most ``max_new_tokens`` tokens; requests are decoded together by continuous batching
  (``runtimes/decoding.py``), and chat messages are rendered with the tokenizer's chat template.

The task comes from the config's architecture unless the push names one. Only code that ships with
transformers runs: safetensors weights, no ``auto_map``, ``trust_remote_code`` off, files local only.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, LoadError
from modelport.runtimes import textkit
from modelport.runtimes.base import (
    Batching,
    Capabilities,
    LoadOptions,
    Placement,
    Scheduler,
    Signature,
    Task,
    Tensors,
    TensorSpec,
    TorchModelRuntime,
    first_line,
    require_modules,
    text_array,
    texts_of,
)

require_modules("transformers", ("torch", "transformers", "tokenizers", "safetensors"), "transformers")

if TYPE_CHECKING:
    import torch

    from modelport.serving.batcher import BatchPolicy

CLASSIFICATION = "text-classification"
FEATURES = "feature-extraction"
GENERATION = "text-generation"
TASKS = (CLASSIFICATION, FEATURES, GENERATION)
SETTINGS: dict[str, dict[str, textkit.Check]] = {
    CLASSIFICATION: {},
    FEATURES: {
        "pooling": textkit.choice("mean", "cls"),
        "normalize": textkit.boolean,
        **textkit.EMBEDDING_SETTINGS,
    },
    GENERATION: {"max_new_tokens": textkit.integer(1, 4096), "max_sequences": textkit.integer(1, 1024)},
}
DEFAULT_MAX_NEW_TOKENS = 256  # a request that names no max_tokens (at most half the model's context)
DEFAULT_MAX_SEQUENCES = 32  # decoded together; more wait
UNKNOWN_CONTEXT = 2048  # the context length of a model whose config gives none
CHECK_TOKENS = 8  # what ``predict`` (the load check) generates when the version sets no max_new_tokens
INPUT = TensorSpec("text", "BYTES", (-1,))
# the chat template of a tokenizer that has none (ChatML): what many instruct models use
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def task_of(config: dict[str, Any]) -> str:
    """The task a config's architecture is made for: a classifier, a causal LM, else its features."""
    for architecture in config.get("architectures") or ():
        if architecture.endswith("ForSequenceClassification"):
            return CLASSIFICATION
        if architecture.endswith(("ForCausalLM", "LMHeadModel")):
            return GENERATION
    return FEATURES


def check_task(task: str | None, config: dict[str, Any]) -> str:
    """The task asked for (or detected), checked against what the model's head can do."""
    if task is None:
        return task_of(config)
    if task not in TASKS:
        raise InvalidInput(
            f"unknown task {task!r} for transformers; use one of {', '.join(TASKS)}", field="task"
        )
    if task != FEATURES and task_of(config) != task:
        head = "*ForSequenceClassification" if task == CLASSIFICATION else "*ForCausalLM or *LMHeadModel"
        raise InvalidInput(
            f"{task} needs a {head} model and config.json's architectures are "
            f"{config.get('architectures') or 'not given'}; push it with task={FEATURES} for its embeddings",
            field="task",
        )
    return task


def check_generation_length(max_new_tokens: int, longest: int | None) -> None:
    """Room for a prompt: the new tokens must be fewer than the model's positions."""
    if longest is not None and max_new_tokens >= longest:
        raise InvalidInput(
            f"max_new_tokens ({max_new_tokens}) must be under the model's maximum length ({longest})",
            field="runtime",
        )


class TransformersRuntime(textkit.TextEmbeddings, TorchModelRuntime):
    framework: ClassVar[str] = "transformers"
    capabilities: ClassVar[Capabilities] = Capabilities(
        tasks=frozenset({Task.PREDICT, Task.EMBED, Task.STREAM}),  # each version: see loaded_capabilities
        placement=Placement.THREAD,
        batching=Batching.TOKENS,
        devices=("cuda", "cpu"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._tokenizer: Any = None
        self._task = FEATURES
        self._settings: dict[str, Any] = {}
        self._signature: Signature | None = None
        self._max_length: int | None = None
        self._inputs: tuple[str, ...] = ()  # token inputs besides ids the model's forward takes
        self._masked = True  # the model's forward takes an attention mask
        self._labels: list[str] = []
        self._tokenizing = threading.Lock()

    # ---- recognise and vet ------------------------------------------------------------------------
    @classmethod
    def recognise(cls, path: Path) -> bool:
        """A transformers ``config.json`` (not the one of a sentence-transformers model)."""
        return textkit.is_hf_config(textkit.read_json(path)) and not textkit.beside_modules_json(path)

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        cls._vetted(artifact_dir, options)

    @classmethod
    def _vetted(cls, artifact_dir: Path, options: LoadOptions) -> tuple[Path, str, dict[str, Any]]:
        """The model's folder, its task and its settings, once everything that must be refused is."""
        files = textkit.files_under(artifact_dir)
        textkit.refuse_code(files, artifact_dir)
        configs = [p for p in files if cls.recognise(p)]
        if not configs:
            raise InvalidInput("no transformers config.json (with a model_type) in the artifact")
        if len(configs) > 1:
            names = ", ".join(textkit.shown(p, artifact_dir) for p in configs)
            raise InvalidInput(f"several transformers models in the artifact ({names}); push one at a time")
        folder = configs[0].parent
        config: dict[str, Any] = textkit.read_json(configs[0])
        textkit.check_encoder(folder, config, artifact_dir)
        task = check_task(options.task, config)
        settings = textkit.check_settings(options.settings, SETTINGS[task], f"a {task} model")
        if task == GENERATION:
            tokenizer_config = textkit.read_json(folder / "tokenizer_config.json")
            longest = textkit.sane_length(
                config.get("max_position_embeddings"),
                config.get("n_positions"),
                tokenizer_config.get("model_max_length") if isinstance(tokenizer_config, dict) else None,
            )
            if "max_new_tokens" in settings:
                check_generation_length(settings["max_new_tokens"], longest)
        return folder, task, settings

    # ---- load ---------------------------------------------------------------------------------------
    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        # vetted again: the version may have been stored before these checks existed
        folder, self._task, self._settings = self._vetted(artifact_dir, options)
        import transformers

        from modelport.runtimes import torchkit

        transformers.utils.logging.disable_progress_bar()
        torchkit.use_threads(options.threads)
        device = torchkit.device_of(options)
        auto = {
            CLASSIFICATION: transformers.AutoModelForSequenceClassification,
            FEATURES: transformers.AutoModel,
            GENERATION: transformers.AutoModelForCausalLM,
        }[self._task]
        local = {"local_files_only": True, "trust_remote_code": False}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **local)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LoadError(f"transformers could not load the tokenizer: {first_line(exc)}") from None
        meter = torchkit.GpuMeter(device)
        with torchkit.out_of_memory_as_error(device):
            try:
                model = auto.from_pretrained(
                    str(folder), use_safetensors=True, dtype=torchkit.dtype_of(options), **local
                )
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise LoadError(f"transformers could not load the model: {first_line(exc)}") from None
            model = model.to(device).eval()
        self._gpu_bytes = meter.stop()
        self._model, self._tokenizer, self._device = model, tokenizer, device
        self._prepare_padding()
        config = model.config
        self._max_length = textkit.sane_length(
            tokenizer.model_max_length,
            getattr(config, "max_position_embeddings", None),
            getattr(config, "n_positions", None),
        )
        accepted = inspect.signature(model.forward).parameters
        self._inputs = ("token_type_ids",) if "token_type_ids" in accepted else ()
        self._masked = "attention_mask" in accepted
        self._signature = self._make_signature(config)

    def _prepare_padding(self) -> None:
        """Batches need a pad token; decoder tokenizers often have none and pad with their end token."""
        tokenizer, config = self._tokenizer, self._model.config
        if tokenizer.pad_token_id is None:
            for fallback in ("eos_token", "unk_token", "bos_token"):
                if getattr(tokenizer, fallback, None) is not None:
                    tokenizer.pad_token = getattr(tokenizer, fallback)
                    break
        if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            # a *ForSequenceClassification finds where each row ends by it
            config.pad_token_id = tokenizer.pad_token_id

    def _make_signature(self, config: Any) -> Signature:
        outputs: tuple[TensorSpec, ...]
        if self._task == CLASSIFICATION:
            count = int(config.num_labels)
            id2label = getattr(config, "id2label", None) or {}
            self._labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(count)]
            outputs = (TensorSpec("label", "BYTES", (-1,)), TensorSpec("scores", "FP32", (-1, count)))
        elif self._task == FEATURES:
            text = config.get_text_config() if hasattr(config, "get_text_config") else config
            hidden = getattr(text, "hidden_size", None) or getattr(text, "d_model", None)
            if not isinstance(hidden, int):
                raise LoadError("the model's config gives no hidden_size: its embedding width is unknown")
            outputs = (TensorSpec("embedding", "FP32", (-1, hidden)),)
        else:
            check_generation_length(self._max_new_tokens(), self._max_length)
            outputs = (TensorSpec("text", "BYTES", (-1,)),)
        return Signature((INPUT,), outputs)

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    # ---- predict ------------------------------------------------------------------------------------
    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        names = self.signature().check_outputs(outputs)
        texts = texts_of(inputs, INPUT.name)
        if self._task == GENERATION:  # the load check's path: requests go through ``scheduler``
            result = {"text": text_array([self._generate(t) for t in texts])}
        elif self._task == CLASSIFICATION:
            scores = self._run(texts, self._classify, len(self._labels))
            labels = [self._labels[i] for i in scores.argmax(axis=1)] if len(scores) else []
            result = {"label": text_array(labels), "scores": scores}
        else:
            result = {"embedding": self.embed(texts)}
        return {n: result[n] for n in names}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._task != FEATURES:
            raise InvalidInput(f"this version is a {self._task} model; embeddings need a {FEATURES} version")
        return self._run(list(texts), self._pool, self.signature().outputs[0].shape[1])

    def max_input_tokens(self) -> int:
        return self._max_length or 0

    def _tokenize(self, texts: list[str]) -> dict[str, list[list[int]]]:
        """Token ids (and token types, where the model takes them) of each text, truncated to the model."""
        truncate = {"truncation": True, "max_length": self._max_length} if self._max_length else {}
        with self._tokenizing:
            encoded = self._tokenizer(texts, return_attention_mask=False, **truncate)
        return {name: encoded[name] for name in ("input_ids", *self._inputs) if name in encoded}

    def _run(self, texts: list[str], forward: Any, width: int) -> np.ndarray:
        """``forward`` over length-sorted chunks of the tokenized ``texts``; rows back in their order.
        Padding is on the right and masked, so a row's answer does not depend on its neighbours."""
        import torch

        out = np.empty((len(texts), width), dtype=np.float32)
        if not texts:
            return out
        encoded = self._tokenize(texts)
        ids = encoded["input_ids"]
        empty = [i for i, row in enumerate(ids) if not row]
        if empty:
            raise InvalidInput(f"text {empty[0]} has no tokens for this model", field="inputs")
        pad = {"input_ids": int(self._tokenizer.pad_token_id or 0), "token_type_ids": 0}
        rows = textkit.CHUNK_ROWS if self._masked else 1  # a model without a mask sees no padding
        from modelport.runtimes.torchkit import batch_memory_as_overload

        assert self._device is not None, "load() first"
        with batch_memory_as_overload(self._device), torch.inference_mode():
            cost = textkit.call_tokens(self._device.type if self._device else "cpu")
            for chunk in textkit.plan_chunks([len(row) for row in ids], cost, max_rows=rows):
                batch = {
                    name: self._tensor(textkit.pad_right([values[i] for i in chunk], pad[name]))
                    for name, values in encoded.items()
                }
                mask = self._tensor(textkit.pad_right([[1] * len(ids[i]) for i in chunk], 0))
                if self._masked:
                    batch["attention_mask"] = mask
                out[chunk] = forward(batch, mask)
        return out

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(array).to(self._device)

    def _classify(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> np.ndarray:
        from modelport.runtimes.torchkit import to_numpy

        logits = self._model(**batch).logits.float()
        problem = getattr(self._model.config, "problem_type", None)
        if problem == "multi_label_classification":
            return to_numpy(logits.sigmoid())
        if problem == "regression":
            return to_numpy(logits)
        return to_numpy(logits.softmax(dim=-1))

    def _pool(self, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> np.ndarray:
        import torch

        from modelport.runtimes.torchkit import to_numpy

        hidden = self._model(**batch).last_hidden_state.float()
        if self._settings.get("pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self._settings.get("normalize", False):
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return to_numpy(pooled)

    def _max_new_tokens(self) -> int:
        """The version's setting, else the default within half the model's context."""
        if "max_new_tokens" in self._settings:
            return int(self._settings["max_new_tokens"])
        return min(DEFAULT_MAX_NEW_TOKENS, (self._max_length or UNKNOWN_CONTEXT) // 2)

    def _generate(self, text: str) -> str:
        """Greedy decoding of one prompt (kept to its last tokens when too long), the new text only."""
        import torch
        from transformers import GenerationConfig

        # the version's max_new_tokens when it sets one, else a few: enough to show the model generates
        new_tokens = int(self._settings.get("max_new_tokens", CHECK_TOKENS))
        with self._tokenizing:
            ids = self._tokenizer(text)["input_ids"]
        if self._max_length is not None:
            ids = ids[-(self._max_length - new_tokens) :]
        if not ids:
            raise InvalidInput("the text has no tokens for this model", field="inputs")
        generation = self._model.generation_config
        eos = generation.eos_token_id
        if eos is None:
            eos = self._model.config.eos_token_id
        config = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eos,
            bos_token_id=generation.bos_token_id,
            pad_token_id=self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else eos,
        )
        from modelport.runtimes.torchkit import batch_memory_as_overload

        assert self._device is not None, "load() first"
        prompt = torch.tensor([ids], dtype=torch.long, device=self._device)
        with batch_memory_as_overload(self._device), torch.inference_mode():
            generated = self._model.generate(
                input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config
            )
        continuation = generated[0, prompt.shape[1] :].tolist()
        return str(self._tokenizer.decode(continuation, skip_special_tokens=True))

    # ---- what the loaded version does ------------------------------------------------------------------
    def loaded_capabilities(self) -> Capabilities:
        declared = self.capabilities
        if self._task == GENERATION:
            return replace(declared, tasks=frozenset({Task.PREDICT, Task.STREAM}), batching=Batching.OWN)
        if self._task == FEATURES:
            return replace(declared, tasks=frozenset({Task.PREDICT, Task.EMBED}))
        return replace(declared, tasks=frozenset({Task.PREDICT}))

    def _text_tokenizer(self) -> Any:
        return self._tokenizer

    # ---- generation (continuous batching) ----------------------------------------------------------------
    def scheduler(
        self, executor: Executor, policy: BatchPolicy, report: Callable[[int, int], None]
    ) -> Scheduler:
        from modelport.runtimes.decoding import ContinuousBatcher, DecodingLimits

        assert self._device is not None, "load() first"
        limits = DecodingLimits(
            max_sequences=int(self._settings.get("max_sequences", DEFAULT_MAX_SEQUENCES)),
            max_waiting=policy.max_queue,
            max_waiting_tokens=policy.max_batch_tokens,
            max_length=self._max_length or UNKNOWN_CONTEXT,
            default_max_tokens=self._max_new_tokens(),
        )
        # the decoding thread detokenises with a tokenizer of its own: a fast tokenizer is not shared
        return ContinuousBatcher(
            self._model,
            copy.deepcopy(self._tokenizer),
            self.prompt_ids,
            self._device,
            limits,
            self._eos_ids(),
            report,
        )

    def prompt_ids(self, prompt: str | Sequence[Mapping[str, str]]) -> list[int]:
        chat = not isinstance(prompt, str)
        text = self._render_chat(prompt) if not isinstance(prompt, str) else prompt
        with self._tokenizing:
            # a chat template writes the special tokens it wants (BOS among them) itself
            return list(self._tokenizer(text, add_special_tokens=not chat)["input_ids"])

    def _render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        tokenizer = self._tokenizer
        try:
            rendered = tokenizer.apply_chat_template(
                [dict(m) for m in messages],
                chat_template=tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE,
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception as exc:  # jinja2 (sandboxed) errors, and templates that raise on purpose
            raise InvalidInput(f"the model's chat template refused the messages: {first_line(exc)}") from None
        return str(rendered)

    def _eos_ids(self) -> set[int]:
        """Tokens that end a sequence: the generation config's, the model config's and the tokenizer's."""
        found: set[int] = set()
        for ids in (
            self._model.generation_config.eos_token_id,
            self._model.config.eos_token_id,
            self._tokenizer.eos_token_id,
        ):
            found.update([ids] if isinstance(ids, int) else ids or [])
        return found

    # ---- memory ---------------------------------------------------------------------------------------
    def unload(self) -> None:
        self._tokenizer = None
        super().unload()
