"""The Runtime seam: what a framework plugs in, and what it declares about itself.

A runtime ``recognise``-s its format by content, ``vet``-s an artifact before it is stored (refusing what
is unsafe or inconsistent), ``load``-s a version with its ``LoadOptions`` (device, dtype, task, threads),
gives its ``signature``, ``predict``-s on a batch of numpy arrays and reports the ``memory`` it holds.
Its class declares ``capabilities``: what it can do (predict, stream, embed), where it must run (a
thread, a worker process, a sandbox), how it is batched (rows, a token budget, not at all, or by its own
scheduler) and which devices it can use. The serving engine reads only these declarations, never
probes attributes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from modelport.errors import InvalidInput

if TYPE_CHECKING:
    import torch

    from modelport.runtimes.streams import Sampling, TokenStream
    from modelport.serving.batcher import BatchPolicy

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a dimension of any size (the batch, first)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # outputs of the model that are not served, each with the reason: shown in the version's signature
    unserved: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
        }
        if self.unserved:
            out["unserved_outputs"] = [{"name": n, "reason": r} for n, r in self.unserved]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data.get("inputs", [])),
            tuple(TensorSpec.from_dict(t) for t in data.get("outputs", [])),
            tuple((str(u["name"]), str(u["reason"])) for u in data.get("unserved_outputs", [])),
        )

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def check_outputs(self, wanted: Sequence[str] | None) -> list[str]:
        """The output names to compute: ``wanted``, each one checked, or all of them."""
        return check_output_names(wanted, self.output_names())


def check_output_names(wanted: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The one check of requested output names, wherever outputs are chosen."""
    if wanted is None:
        return list(available)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; model outputs {sorted(available)}", field="outputs")
    return list(wanted)


class Task(StrEnum):
    """What a loaded version can do; each beyond ``predict`` has a Protocol below."""

    PREDICT = "predict"  # a batch of tensors in, tensors out
    STREAM = "stream"  # token-by-token text generation (``StreamingRuntime``)
    EMBED = "embed"  # texts to vectors (``EmbeddingRuntime``)


class Placement(StrEnum):
    """Where ``predict`` runs."""

    THREAD = "thread"  # in the server's inference threads: the framework releases the GIL
    PROCESS = "process"  # a worker process of its own: pure-Python models that hold the GIL
    SANDBOX = "sandbox"  # a confined worker process: formats whose loading can run code


class Batching(StrEnum):
    """How requests reach ``predict``."""

    ROWS = "rows"  # merged along the first dimension, up to ``max_batch_size`` rows
    TOKENS = "tokens"  # merged likewise, up to ``max_batch_size`` elements (tokens) in all
    NONE = "none"  # one request per call, several calls at once
    OWN = "own"  # the runtime schedules itself (``SchedulingRuntime``), e.g. continuous batching


@dataclass(frozen=True)
class Capabilities:
    tasks: frozenset[Task] = frozenset({Task.PREDICT})
    placement: Placement = Placement.THREAD
    batching: Batching = Batching.ROWS
    devices: tuple[str, ...] = ("cpu",)  # where it can run, preferred first ("cuda", "cuda:1", "cpu")
    preload: tuple[str, ...] = ()  # modules a sandboxed worker imports before it confines itself


@dataclass(frozen=True)
class LoadOptions:
    """How one version is loaded: chosen by the server from the version's config and its settings."""

    device: str = "cpu"  # where it runs, resolved: "cpu", "cuda", "cuda:1" (one of capabilities.devices)
    dtype: str | None = None  # float32 | float16 | bfloat16; None: the artifact's own (fp32 on CPU)
    task: str | None = None  # e.g. "text-classification" for a transformers model; None: from the artifact
    threads: int = 1  # intra-op compute threads the framework may use (torch's are per process)
    # the version config's ``runtime`` object: settings only this runtime understands (and checks),
    # e.g. {"pooling": "mean", "normalize": true, "max_new_tokens": 32} for a transformers model
    settings: Mapping[str, Any] = field(default_factory=dict)


def require_modules(framework: str, modules: Sequence[str], extra: str) -> None:
    """Raise ImportError (the catalog then leaves the runtime out) when a module a runtime needs is not
    installed; checked without importing it, so that loading the catalog imports no framework."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"the {framework} runtime needs {module}: pip install 'modelport[{extra}]'")


def is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


@dataclass(frozen=True)
class MemoryUse:
    """Bytes a loaded version holds; the model cache charges them against its host and GPU budgets.
    A runtime that cannot tell reports 0 on the host and the cache measures the process's growth."""

    host: int = 0
    gpu: int = 0


class Runtime(Protocol):
    """One loaded model version. Instances are created empty, then ``load``-ed once."""

    framework: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @classmethod
    def recognise(cls, path: Path) -> bool:
        """True when the file's content (never its name) is this framework's model format."""

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        """Before anything is stored: raise ``UnsafeFormat`` or ``InvalidInput`` for an artifact that must
        be refused (code it would run, pickled weights, a signature that does not fit the program)."""

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        """Load the version's files as ``options`` say (its device is one of ``capabilities.devices``)."""

    def signature(self) -> Signature: ...

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        """Run a batch. ``outputs`` limits what is computed or returned; ``None`` means all."""

    def memory(self) -> MemoryUse: ...

    def loaded_capabilities(self) -> Capabilities:
        """What this loaded version does: the class's declaration, narrowed by what was loaded (one
        transformers model embeds, another generates)."""

    def unload(self) -> None: ...


class StreamingRuntime(Runtime, Protocol):
    """``Task.STREAM``: a text generator. Its scheduler (``Batching.OWN``) is a ``GenerationScheduler``."""

    def prompt_ids(self, prompt: str | Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a prompt: a text, or chat messages (``role``, ``content``) rendered with the
        model's chat template."""


class EmbeddingRuntime(Runtime, Protocol):
    """``Task.EMBED``: one vector per text, and the model's limits."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def max_input_tokens(self) -> int: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes; raises ``InvalidInput`` for a text over the model's maximum unless
        the version is configured to truncate (then the count is the truncated one)."""

    def resizable(self) -> bool:
        """Whether its vectors may be cut to fewer dimensions (and normalised again): Matryoshka models."""

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """The texts of its own tokenizer's ids (``InvalidInput`` for ids it does not have)."""


class Scheduler(Protocol):
    """What the data plane hands requests to: the row batcher, or a runtime's own scheduler."""

    @property
    def inflight(self) -> int:
        """Requests submitted and not yet answered."""

    async def submit(
        self, inputs: Tensors, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> Tensors: ...

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request is in flight (False if ``timeout`` seconds pass first)."""

    def configure(self, policy: BatchPolicy) -> None:
        """New serving settings of the version (queue bound, batch size), applied without a reload."""

    def close(self) -> None: ...


class GenerationScheduler(Scheduler, Protocol):
    """The scheduler of a ``StreamingRuntime``: token streams decoded together (continuous batching)."""

    def start(self, prompt: list[int], sampling: Sampling) -> TokenStream:
        """Queue one sequence (on the event loop); raises ``Overloaded`` when too many wait."""


class SchedulingRuntime(Runtime, Protocol):
    """``Batching.OWN``: the runtime gives the data plane a scheduler of its own. ``report`` takes the
    sequences (or requests) running and waiting, for the metrics, whenever they change."""

    def scheduler(
        self, executor: Executor, policy: BatchPolicy, report: Callable[[int, int], None]
    ) -> Scheduler: ...


class RuntimeBase:
    """Defaults for built-in runtimes: ``predict`` on row batches in a thread, CPU, memory measured."""

    framework: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        refuse_unread_options(cls.framework, options)

    def memory(self) -> MemoryUse:
        return MemoryUse()

    def loaded_capabilities(self) -> Capabilities:
        return self.capabilities

    def unload(self) -> None:
        return None


class TorchModelRuntime(RuntimeBase):
    """What the runtimes holding one torch module on a device share (torch, Keras on torch,
    transformers, sentence-transformers): the memory it holds, and an unload that gives the device's
    memory back. torch is imported only once a version loads."""

    def __init__(self) -> None:
        self._model: Any = None
        self._device: torch.device | None = None
        self._gpu_bytes = 0  # measured while loading onto a GPU

    def memory(self) -> MemoryUse:
        if self._model is None or self._device is None:
            return MemoryUse()
        from modelport.runtimes.torchkit import memory_of

        return memory_of(self._model, self._device, self._gpu_bytes)

    def unload(self) -> None:
        device, self._model, self._device = self._device, None, None
        if device is not None:
            from modelport.runtimes.torchkit import release

            release(device)


def refuse_unread_options(framework: str, options: LoadOptions) -> None:
    """A runtime that reads no runtime settings and has one task refuses to be given either: a setting
    that would silently do nothing is a mistake worth a 400."""
    if options.settings:
        raise InvalidInput(
            f"the {framework} runtime takes no runtime settings; got {sorted(options.settings)}",
            field="runtime",
        )
    if options.task:
        raise InvalidInput(f"the {framework} runtime takes no task; got {options.task!r}", field="task")


def find_model_file(artifact_dir: Path, runtime: type[Runtime]) -> Path:
    """The one file in ``artifact_dir`` that ``runtime`` recognises."""
    matches = [p for p in sorted(artifact_dir.rglob("*")) if p.is_file() and runtime.recognise(p)]
    if not matches:
        raise InvalidInput(f"no {runtime.framework} model file in the artifact")
    if len(matches) > 1:
        names = ", ".join(str(p.relative_to(artifact_dir)) for p in matches)
        raise InvalidInput(f"several {runtime.framework} model files in the artifact: {names}")
    return matches[0]


def single_input(inputs: Tensors, spec: Signature) -> np.ndarray:
    """Tabular runtimes take one 2-D input; check it against the signature."""
    expected = spec.inputs[0]
    if len(inputs) != 1 or expected.name not in inputs:
        raise InvalidInput(f"expected exactly one input named {expected.name!r}", field="inputs")
    array = inputs[expected.name]
    width = expected.shape[1]
    if array.ndim != 2 or (width != -1 and array.shape[1] != width):
        raise InvalidInput(
            f"input {expected.name!r} must have shape [-1, {width}], got {list(array.shape)}", field="inputs"
        )
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {expected.name!r} must be numeric", field="inputs")
    return array


def first_line(exc: BaseException) -> str:
    """A framework's message, short: its first line, at most 300 characters (callers strip paths)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def texts_of(inputs: Tensors, name: str) -> list[str]:
    """A BYTES input of shape [n] or [n, 1] as n strings (JSON gives str, binary tensors give bytes)."""
    if name not in inputs:
        raise InvalidInput(f"expected an input named {name!r}", field="inputs")
    array = inputs[name]
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.dtype != object:
        raise InvalidInput(
            f"input {name!r} must be BYTES of shape [-1] or [-1, 1], got {list(array.shape)}", field="inputs"
        )
    texts = []
    for item in array:
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input {name!r} holds bytes that are not UTF-8 text", field="inputs"
                ) from None
        elif not isinstance(item, str):
            raise InvalidInput(f"input {name!r} must hold text", field="inputs")
        texts.append(item)
    return texts


def text_array(texts: Sequence[str]) -> np.ndarray:
    """Strings as a BYTES output (an object array of UTF-8 bytes)."""
    out = np.empty(len(texts), dtype=object)
    out[:] = [t.encode("utf-8") for t in texts]
    return out


def select(outputs: Tensors, wanted: Sequence[str] | None) -> Tensors:
    if wanted is None:
        return outputs
    return {n: outputs[n] for n in check_output_names(wanted, list(outputs))}


class BoosterRuntime(RuntimeBase):
    """What the gradient-boosting runtimes share: a booster, its task, and a tabular signature.

    Subclasses set ``framework``, implement ``recognise`` and ``load`` (which sets ``_booster``,
    ``_task`` and ``_signature``) and ``_raw_predict`` (the booster's own output for a 2-D input).
    """

    def __init__(self) -> None:
        self._booster: Any = None
        self._task = "regression"
        self._signature: Signature | None = None

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        x = single_input(inputs, self.signature())
        return tabular_outputs(self._raw_predict(x), self._task, len(x), outputs)

    def unload(self) -> None:
        self._booster = None


def tabular_signature(width: int, task: str, classes: int = 2) -> Signature:
    """One FP64 input of ``width`` features; outputs by ``task``: ``binary`` and ``multiclass`` give
    ``predict`` (INT64 labels) and ``predict_proba``, ``labels`` only labels, ``regression`` FP64 values."""
    outputs = [TensorSpec("predict", "FP64" if task == "regression" else "INT64", (-1,))]
    if task in ("binary", "multiclass"):
        outputs.append(TensorSpec("predict_proba", "FP64", (-1, 2 if task == "binary" else classes)))
    return Signature((TensorSpec("input-0", "FP64", (-1, width)),), tuple(outputs))


def tabular_outputs(raw: np.ndarray, task: str, rows: int, wanted: Sequence[str] | None) -> Tensors:
    """Boosters' raw predictions (probability of class 1, class probabilities, labels or values) as the
    outputs ``tabular_signature`` promises."""
    raw = np.asarray(raw, dtype=np.float64)
    if task == "binary":
        return select(
            classifier_outputs((raw > 0.5).astype(np.int64), np.column_stack([1.0 - raw, raw])), wanted
        )
    if task == "multiclass":
        proba = raw.reshape(rows, -1)
        return select(classifier_outputs(proba.argmax(axis=1).astype(np.int64), proba), wanted)
    if task == "labels":
        return select(classifier_outputs(raw.astype(np.int64), None), wanted)
    return select({"predict": raw}, wanted)


def classifier_outputs(labels: np.ndarray, proba: np.ndarray | None) -> Tensors:
    out: Tensors = {"predict": labels}
    if proba is not None:
        out["predict_proba"] = proba
    return out
