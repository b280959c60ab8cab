"""sentence-transformers models: a directory with ``modules.json`` (Transformer -> Pooling -> Normalize, and
the like), served as ``text`` -> ``embedding``.

sentence-transformers imports the class each module's ``type`` names, and a module's config can name more
(Dense's activation): only a fixed allow-list of its own built-in modules is accepted, the Transformer
module's files follow the transformers runtime's rules (safetensors only, no ``auto_map``), and the model
loads with ``trust_remote_code`` off and local files only.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, LoadError, UnsafeFormat
from modelport.runtimes import textkit
from modelport.runtimes.base import (
    Batching,
    Capabilities,
    LoadOptions,
    Placement,
    Signature,
    Task,
    Tensors,
    TensorSpec,
    TorchModelRuntime,
    first_line,
    require_modules,
    texts_of,
)

require_modules(
    "sentence-transformers", ("torch", "transformers", "sentence_transformers", "safetensors"), "transformers"
)

if TYPE_CHECKING:
    pass

# modules that only compute (no code of their own, weights in safetensors), by class name...
MODULES = ("Transformer", "Pooling", "Normalize", "Dense", "LayerNorm", "Dropout", "WeightedLayerPooling")
# ...under each package path sentence-transformers has kept them in (2.x/3.x ``models``, 5.x, 6.x), as a
# class of the package (``models.Pooling``) or of its own module (``base.modules.pooling.Pooling``)
PACKAGES = (
    "sentence_transformers.models",
    "sentence_transformers.sentence_transformer.modules",
    "sentence_transformers.base.modules",
)
ALLOWED_TYPES = frozenset(
    name
    for package in PACKAGES
    for module in MODULES
    for name in (
        f"{package}.{module}",
        f"{package}.{module}.{module}",
        f"{package}.{re.sub(r'(?<!^)(?=[A-Z])', '_', module).lower()}.{module}",
    )
)
INPUT_MODULE = "Transformer"
# Dense's activation is imported by name: a torch.nn module class, e.g. torch.nn.modules.activation.Tanh
ACTIVATION = re.compile(r"^torch\.nn\.(modules\.[a-z_]+\.)?[A-Z][A-Za-z0-9]*$")
TASKS = ("feature-extraction",)
INPUT = TensorSpec("text", "BYTES", (-1,))


def module_class(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


class SentenceTransformersRuntime(textkit.TextEmbeddings, TorchModelRuntime):
    framework: ClassVar[str] = "sentence-transformers"
    capabilities: ClassVar[Capabilities] = Capabilities(
        tasks=frozenset({Task.PREDICT, Task.EMBED}),
        placement=Placement.THREAD,
        batching=Batching.TOKENS,
        devices=("cuda", "cpu"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._signature: Signature | None = None
        self._max_length: int | None = None
        self._prompt: str | None = None
        self._settings: dict[str, Any] = {}
        self._tokenizing = threading.Lock()

    # ---- recognise and vet ------------------------------------------------------------------------
    @classmethod
    def recognise(cls, path: Path) -> bool:
        """sentence-transformers' ``modules.json``: a list of modules, each with its ``type`` and ``path``."""
        return textkit.is_modules_json(textkit.read_json(path))

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        cls._vetted(artifact_dir, options)

    @classmethod
    def _vetted(cls, artifact_dir: Path, options: LoadOptions) -> Path:
        """The model's folder (where ``modules.json`` is), once everything that must be refused is."""
        files = textkit.files_under(artifact_dir)
        textkit.refuse_code(files, artifact_dir)
        found = [p for p in files if cls.recognise(p)]
        if not found:
            raise InvalidInput("no sentence-transformers modules.json in the artifact")
        if len(found) > 1:
            names = ", ".join(textkit.shown(p, artifact_dir) for p in found)
            raise InvalidInput(f"several sentence-transformers models in the artifact ({names})")
        root = found[0].parent
        modules: list[dict[str, Any]] = textkit.read_json(found[0])
        for module in modules:
            check_module(module, root, artifact_dir)
        if module_class(modules[0]["type"]) != INPUT_MODULE:
            raise InvalidInput(
                f"the first module must be a {INPUT_MODULE} (a transformers model and tokenizer)"
            )
        if sum(module_class(m["type"]) == INPUT_MODULE for m in modules) != 1:
            raise InvalidInput(f"a sentence-transformers model here has exactly one {INPUT_MODULE} module")
        check_model_type(root / "config_sentence_transformers.json")
        encoder = root / modules[0]["path"]
        config = textkit.read_json(encoder / "config.json")
        if not textkit.is_hf_config(config):
            raise InvalidInput(f"no transformers config.json in {textkit.shown(encoder, artifact_dir)!r}")
        textkit.check_encoder(encoder, config, artifact_dir)
        if options.task is not None and options.task not in TASKS:
            raise InvalidInput(
                f"a sentence-transformers model does {', '.join(TASKS)}, not {options.task!r}", field="task"
            )
        textkit.check_settings(options.settings, textkit.EMBEDDING_SETTINGS, "a sentence-transformers model")
        return root

    # ---- load ---------------------------------------------------------------------------------------
    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        root = self._vetted(artifact_dir, options)  # the version may have been stored before these checks
        self._settings = dict(options.settings)
        import transformers
        from sentence_transformers import SentenceTransformer

        from modelport.runtimes import torchkit

        transformers.utils.logging.disable_progress_bar()
        torchkit.use_threads(options.threads)
        device = torchkit.device_of(options)
        meter = torchkit.GpuMeter(device)
        with torchkit.out_of_memory_as_error(device):
            try:
                model = SentenceTransformer(
                    str(root),
                    device=str(device),
                    local_files_only=True,
                    trust_remote_code=False,
                    backend="torch",
                    model_kwargs={"use_safetensors": True, "dtype": torchkit.dtype_of(options)},
                )
            except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as exc:
                raise LoadError(
                    f"sentence-transformers could not load the model: {first_line(exc)}"
                ) from None
        self._gpu_bytes = meter.stop()
        self._model, self._device = model.eval(), device
        tokenizer = model.tokenizer
        self._max_length = textkit.sane_length(
            model.max_seq_length, getattr(tokenizer, "model_max_length", None)
        )
        self._prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
        width = model.truncate_dim or model.get_embedding_dimension() or -1
        self._signature = Signature((INPUT,), (TensorSpec("embedding", "FP32", (-1, int(width))),))

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    # ---- predict ------------------------------------------------------------------------------------
    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        names = self.signature().check_outputs(outputs)
        embeddings = self.embed(texts_of(inputs, INPUT.name))
        return {n: embeddings for n in names}

    def max_input_tokens(self) -> int:
        return self._max_length or 0

    def _text_tokenizer(self) -> Any:
        return self._model.tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, as ``SentenceTransformer.encode`` gives, computed in length-sorted chunks
        (one long text does not pad many short ones) and returned in the texts' order."""
        import torch
        from sentence_transformers.util import batch_to_device

        texts = list(texts)
        model, device = self._model, self._device
        assert device is not None, "load() first"
        out = np.empty((len(texts), self.signature().outputs[0].shape[1]), dtype=np.float32)
        if not texts:
            return out
        chunks = textkit.plan_chunks(self._lengths(texts), textkit.call_tokens(device.type))
        from modelport.runtimes.torchkit import batch_memory_as_overload

        with batch_memory_as_overload(device), torch.inference_mode():
            for chunk in chunks:
                with self._tokenizing:
                    features = model.preprocess([texts[i] for i in chunk], prompt=self._prompt)
                vectors = model(batch_to_device(features, device))["sentence_embedding"]
                if model.truncate_dim:
                    vectors = vectors[:, : model.truncate_dim]
                out[chunk] = vectors.float().cpu().numpy()
        return out

    def _lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text (truncated as the model truncates); a single text needs no count."""
        if len(texts) == 1:
            return [1]
        tokenizer = self._model.tokenizer
        truncate = {"truncation": True, "max_length": self._max_length} if self._max_length else {}
        with self._tokenizing:
            encoded = tokenizer(
                texts, return_attention_mask=False, return_token_type_ids=False, verbose=False, **truncate
            )
        return [len(ids) for ids in encoded["input_ids"]]


def check_module(module: dict[str, Any], root: Path, artifact_dir: Path) -> None:
    """A module of an allowed type, whose folder is inside the model (and whose config imports nothing
    but a torch activation)."""
    type_name = module["type"]
    if type_name not in ALLOWED_TYPES:
        raise UnsafeFormat(
            f"modules.json names the module type {type_name[:200]!r}: sentence-transformers would import it, "
            f"and only its built-in modules are loaded here ({', '.join(MODULES)})"
        )
    relative = PurePosixPath(module["path"])
    if relative.is_absolute() or ".." in relative.parts or "\\" in module["path"]:
        raise UnsafeFormat(f"modules.json points outside the model: {module['path'][:200]!r}")
    folder = root.joinpath(*relative.parts)
    if module_class(type_name) == "Dense":
        config = textkit.read_json(folder / "config.json")
        activation = config.get("activation_function") if isinstance(config, dict) else None
        if activation is not None and not (isinstance(activation, str) and ACTIVATION.match(activation)):
            raise UnsafeFormat(
                f"{textkit.shown(folder / 'config.json', artifact_dir)} names the activation "
                f"{str(activation)[:200]!r}; only torch.nn activation classes are loaded"
            )


def check_model_type(path: Path) -> None:
    """sentence-transformers also saves sparse encoders and cross-encoders: only dense embedders here."""
    config = textkit.read_json(path)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in (None, "SentenceTransformer"):
        raise InvalidInput(
            f"this is a {str(model_type)[:100]} model; the sentence-transformers runtime serves "
            "SentenceTransformer (dense embedding) models"
        )
