"""PyTorch programs: TorchScript archives (``torch.jit.save``) and ``torch.export`` programs (``.pt2``).

A TorchScript program does not declare its tensors: a ``signature.json`` beside it does, and ``vet`` tries it
on the program. An export program declares its own (a ``signature.json`` may rename them).

Loading either format can do more than read tensors, so ``vet`` reads the archive before anything loads it
(``torchcheck``), at push and again at every load.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, LoadError
from modelport.runtimes import torchcheck
from modelport.runtimes.base import (
    Batching,
    Capabilities,
    LoadOptions,
    Placement,
    Signature,
    Tensors,
    TensorSpec,
    TorchModelRuntime,
    find_model_file,
    refuse_unread_options,
    require_modules,
    select,
)
from modelport.serving.datatypes import numpy_dtype
from modelport.storage.sniff import is_torchscript

require_modules("torch", ("torch",), "torch")

if TYPE_CHECKING:
    import torch

SIGNATURE_FILE = "signature.json"
SIGNATURE_HINT = (
    f"put a {SIGNATURE_FILE} beside the TorchScript file (in a zip or tar archive) to declare its tensors, "
    'e.g. {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], '
    '"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]} '
    "(Open Inference Protocol datatypes, -1 for a dimension of any size)"
)
_FLOATS = ("FP16", "BF16", "FP32", "FP64")


class TorchRuntime(TorchModelRuntime):
    framework: ClassVar[str] = "torch"
    capabilities: ClassVar[Capabilities] = Capabilities(
        placement=Placement.THREAD, batching=Batching.ROWS, devices=("cuda", "cpu")
    )

    def __init__(self) -> None:
        super().__init__()
        self._signature: Signature | None = None
        self._compute: torch.dtype | None = None  # floating inputs are cast to it (None: as declared)
        self._arrange: Callable[[list[Any]], tuple[tuple[Any, ...], dict[str, Any]]] = _positional

    @classmethod
    def recognise(cls, path: Path) -> bool:
        return _archive_kind(path) is not None

    @classmethod
    def vet(cls, artifact_dir: Path, options: LoadOptions) -> None:
        refuse_unread_options(cls.framework, options)
        path = find_model_file(artifact_dir, cls)
        declared = _read_signature(path)
        if _archive_kind(path) == "pt2":
            torchcheck.vet_pt2(path)
            try:
                program = _load_program(path)
            except Exception as exc:  # torch's deserializer raises many types
                raise InvalidInput(f"torch.export cannot load the program: {_first_line(exc)}") from None
            _program_signature(program, declared)
            return
        if declared is None:
            raise InvalidInput(f"a TorchScript program needs a signature: {SIGNATURE_HINT}")
        torchcheck.vet_script_code(path)
        try:
            module = _load_script(path)
        except Exception as exc:
            raise InvalidInput(f"TorchScript cannot load the program: {_first_line(exc)}") from None
        torchcheck.check_script_graph(module)
        _try_script(module, declared)

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        from modelport.runtimes import torchkit

        torchkit.use_threads(options.threads)
        device = torchkit.device_of(options)
        path = find_model_file(artifact_dir, type(self))
        declared = _read_signature(path)
        try:
            if _archive_kind(path) == "pt2":
                torchcheck.vet_pt2(
                    path
                )  # again: what torch would run is refused at every load, not only at push
                program = _load_program(path)
                self._signature = _program_signature(program, declared)
                self._arrange = _arranger(program)
                module = program.module()
            else:
                if declared is None:
                    raise LoadError(f"the TorchScript program has no {SIGNATURE_FILE}")
                torchcheck.vet_script_code(path)
                module = _load_script(path)
                torchcheck.check_script_graph(module)
                self._signature = declared
                module.eval()
        except (InvalidInput, LoadError):
            raise
        except Exception as exc:
            raise LoadError(f"torch could not load the program: {_first_line(exc)}") from None
        if options.dtype is not None:
            self._compute = torchkit.dtype_of(options)
            module.to(self._compute)
        meter = torchkit.GpuMeter(device)
        with torchkit.out_of_memory_as_error(device):
            module.to(device)
        self._gpu_bytes = meter.stop()
        self._model = module
        self._device = device

    def signature(self) -> Signature:
        assert self._signature is not None, "load() first"
        return self._signature

    def predict(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        import torch

        from modelport.runtimes import torchkit

        spec = self.signature()
        wanted = spec.check_outputs(outputs)
        assert self._device is not None, "load() first"
        tensors = _input_tensors(inputs, spec, self._device, self._compute)
        args, kwargs = self._arrange(tensors)
        try:
            with torchkit.batch_memory_as_overload(self._device), torch.inference_mode():
                result = self._model(*args, **kwargs)
        except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as exc:
            raise InvalidInput(f"the model rejected the inputs: {_first_line(exc)}", field="inputs") from None
        flat = _flatten(result, spec.output_names())
        if len(flat) != len(spec.outputs):
            raise InvalidInput(
                f"the model returned {len(flat)} tensors; its signature declares {len(spec.outputs)}"
            )
        out = {t.name: _as_declared(tensor, t) for t, tensor in zip(spec.outputs, flat, strict=True)}
        return select(out, wanted)


# ---- recognising -----------------------------------------------------------------------------------------
def _archive_kind(path: Path) -> str | None:
    """``torchscript``, ``pt2`` or None, from the zip's member names alone (no member is read)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        return None
    if is_torchscript(names):
        return "torchscript"
    top = torchcheck.single_top(names)
    if top is None or f"{top}/archive_format" not in names:
        return None
    models = f"{top}/models/"
    return "pt2" if any(n.startswith(models) and n.endswith(".json") for n in names) else None


# ---- signature.json ------------------------------------------------------------------------------------
def _read_signature(model_path: Path) -> Signature | None:
    path = model_path.parent / SIGNATURE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{SIGNATURE_FILE} is not JSON ({exc}); {SIGNATURE_HINT}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{SIGNATURE_FILE} must be a JSON object; {SIGNATURE_HINT}")
    return Signature(_specs(data, "inputs"), _specs(data, "outputs"))


def _specs(data: dict[str, Any], key: str) -> tuple[TensorSpec, ...]:
    from modelport.runtimes.torchkit import V2_TO_TORCH

    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{SIGNATURE_FILE} needs a non-empty {key!r} list; {SIGNATURE_HINT}")
    specs: list[TensorSpec] = []
    for i, item in enumerate(items):
        where = f"{SIGNATURE_FILE} {key}[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object with name, datatype and shape")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidInput(f"{where} needs a name (a string of 1 to 128 characters)")
        if datatype not in V2_TO_TORCH:
            raise InvalidInput(
                f"{where} ({name!r}) has datatype {datatype!r}; use one of {', '.join(V2_TO_TORCH)}"
            )
        if not isinstance(shape, list) or not all(type(d) is int and d >= -1 for d in shape):
            raise InvalidInput(f"{where} ({name!r}) needs a shape: a list of sizes, -1 for any size")
        if key == "outputs" and datatype == "BF16":
            datatype = "FP32"  # numpy has no bfloat16: such outputs are served as float32
        specs.append(TensorSpec(name, datatype, tuple(shape)))
    if len({s.name for s in specs}) != len(specs):
        raise InvalidInput(f"{SIGNATURE_FILE} names two {key} alike")
    return tuple(specs)


# ---- TorchScript -----------------------------------------------------------------------------------------
def _load_script(path: Path) -> Any:
    import torch

    return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]


def _try_script(module: Any, declared: Signature) -> None:
    """The declared inputs fit ``forward`` and give the declared outputs."""
    import torch

    arguments = module.forward.schema.arguments[1:]  # after self
    required = sum(1 for a in arguments if not a.has_default_value())
    if not required <= len(declared.inputs) <= len(arguments):
        takes = f"{required}" if required == len(arguments) else f"{required} to {len(arguments)}"
        raise InvalidInput(
            f"{SIGNATURE_FILE} does not fit the program: it declares {len(declared.inputs)} inputs and "
            f"forward takes {takes} ({', '.join(a.name for a in arguments)})"
        )
    try:
        trial = [_zeros(spec) for spec in declared.inputs]
        with torch.inference_mode():
            flat = _flatten(module(*trial), declared.output_names())
    except Exception as exc:  # the program's own errors, whatever their type
        raise InvalidInput(f"{SIGNATURE_FILE} does not fit the program: {_first_line(exc)}") from None
    if len(flat) != len(declared.outputs):
        raise InvalidInput(
            f"{SIGNATURE_FILE} does not fit the program: it declares {len(declared.outputs)} outputs and "
            f"the program returned {len(flat)}"
        )
    for spec, tensor in zip(declared.outputs, flat, strict=True):
        shape = tuple(tensor.shape)
        if len(shape) != len(spec.shape) or any(
            d not in (-1, got) for d, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"{SIGNATURE_FILE} does not fit the program: output {spec.name!r} is declared "
                f"{list(spec.shape)} and a trial batch gave {list(shape)}"
            )


def _zeros(spec: TensorSpec) -> torch.Tensor:
    import torch

    from modelport.runtimes.torchkit import V2_TO_TORCH

    return torch.zeros([1 if d < 0 else d for d in spec.shape], dtype=V2_TO_TORCH[spec.datatype])


# ---- torch.export programs -------------------------------------------------------------------------------
def _load_program(path: Path) -> Any:
    import torch

    with path.open("rb") as f:  # a file object: torch.export.load warns about names not ending in .pt2
        return torch.export.load(f)


def _program_signature(program: Any, declared: Signature | None) -> Signature:
    from torch.export.graph_signature import InputKind, OutputKind, TensorArgument

    nodes = {node.name: node for node in program.graph.nodes}
    inputs: list[TensorSpec] = []
    for spec in program.graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue
        if not isinstance(spec.arg, TensorArgument):
            raise InvalidInput(
                f"the program takes {spec.arg}, which is not a tensor; modelport passes tensors only"
            )
        inputs.append(_tensor_spec(spec.arg.name, nodes[spec.arg.name].meta.get("val"), output=False))
    outputs: list[TensorSpec] = []
    for i, spec in enumerate(
        s for s in program.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT
    ):
        if not isinstance(spec.arg, TensorArgument):
            raise InvalidInput(f"the program returns {spec.arg}, which is not a tensor")
        outputs.append(_tensor_spec(f"output-{i}", nodes[spec.arg.name].meta.get("val"), output=True))
    found = Signature(tuple(inputs), tuple(outputs))
    return found if declared is None else _renamed(found, declared)


def _tensor_spec(name: str, value: Any, *, output: bool) -> TensorSpec:
    import torch

    from modelport.runtimes.torchkit import TORCH_TO_V2

    if not isinstance(value, torch.Tensor) or value.dtype not in TORCH_TO_V2:
        raise InvalidInput(
            f"the program's {'output' if output else 'input'} {name!r} is not a served tensor type"
        )
    datatype = TORCH_TO_V2[value.dtype]
    if output and datatype == "BF16":
        datatype = "FP32"
    return TensorSpec(name, datatype, tuple(d if isinstance(d, int) else -1 for d in value.shape))


def _renamed(found: Signature, declared: Signature) -> Signature:
    """The program's tensors under the names ``signature.json`` gives them (which must fit the program)."""
    specs: dict[str, list[TensorSpec]] = {"inputs": [], "outputs": []}
    for key, mine, theirs in (
        ("inputs", found.inputs, declared.inputs),
        ("outputs", found.outputs, declared.outputs),
    ):
        if len(mine) != len(theirs):
            raise InvalidInput(
                f"{SIGNATURE_FILE} does not fit the program: it declares {len(theirs)} {key} and the program "
                f"has {len(mine)}"
            )
        for ours, given in zip(mine, theirs, strict=True):
            fits = len(ours.shape) == len(given.shape) and all(
                -1 in (a, b) or a == b for a, b in zip(ours.shape, given.shape, strict=True)
            )
            if given.datatype != ours.datatype or not fits:
                raise InvalidInput(
                    f"{SIGNATURE_FILE} does not fit the program: {given.name!r} is declared {given.datatype} "
                    f"{list(given.shape)} and the program has {ours.datatype} {list(ours.shape)}"
                )
            shape = tuple(a if a != -1 else b for a, b in zip(ours.shape, given.shape, strict=True))
            specs[key].append(TensorSpec(given.name, ours.datatype, shape))
    return Signature(tuple(specs["inputs"]), tuple(specs["outputs"]))


def _arranger(program: Any) -> Callable[[list[Any]], tuple[tuple[Any, ...], dict[str, Any]]]:
    """How the program's flat inputs become its call: positional, keyword or nested as it was exported."""
    from torch.utils import _pytree

    in_spec = program.call_spec.in_spec
    if in_spec is None:
        return _positional

    def arrange(tensors: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = _pytree.tree_unflatten(tensors, in_spec)
        return tuple(args), dict(kwargs)

    return arrange


def _positional(tensors: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(tensors), {}


# ---- tensors in and out ----------------------------------------------------------------------------------
def _input_tensors(
    inputs: Tensors, spec: Signature, device: torch.device, compute: torch.dtype | None
) -> list[torch.Tensor]:
    import torch

    from modelport.runtimes.torchkit import V2_TO_TORCH

    expected = [t.name for t in spec.inputs]
    if set(inputs) != set(expected):
        unknown = sorted(set(inputs) - set(expected))
        missing = [n for n in expected if n not in inputs]
        raise InvalidInput(f"inputs must be {expected}; unknown {unknown}, missing {missing}", field="inputs")
    tensors = []
    for t in spec.inputs:
        array = inputs[t.name]
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise InvalidInput(f"input {t.name!r} must be numeric ({t.datatype})", field="inputs")
        if array.ndim != len(t.shape) or any(
            d not in (-1, got) for d, got in zip(t.shape, array.shape, strict=True)
        ):
            raise InvalidInput(
                f"input {t.name!r} must have shape {list(t.shape)}, got {list(array.shape)}", field="inputs"
            )
        dtype = compute if compute is not None and t.datatype in _FLOATS else V2_TO_TORCH[t.datatype]
        if not array.flags.writeable:  # torch warns about (and never writes) read-only buffers
            array = array.copy()
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype))
    return tensors


def _flatten(result: Any, names: list[str]) -> list[Any]:
    """The tensors a program returned, in the signature's order: one, a tuple/list, or a dict (by name when
    its keys are the signature's names, else in its own order)."""
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        if names and all(n in result for n in names):
            return [t for n in names for t in _flatten(result[n], [])]
        return [t for v in result.values() for t in _flatten(v, [])]
    if isinstance(result, (tuple, list)):
        return [t for v in result for t in _flatten(v, [])]
    raise InvalidInput(f"the model returned a {type(result).__name__}, not tensors")


def _as_declared(tensor: torch.Tensor, spec: TensorSpec) -> np.ndarray:
    from modelport.runtimes.torchkit import to_numpy

    array = to_numpy(tensor)
    wanted = numpy_dtype(spec.datatype)
    return array if array.dtype == wanted else array.astype(wanted)


def _first_line(exc: BaseException) -> str:
    """The gist of a torch error: TorchScript's own put the interpreter's traceback first, the error last."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if lines[0].startswith("The following operation failed") else lines[0])[:300]
