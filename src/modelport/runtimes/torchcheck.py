"""What a PyTorch artifact must not hold, read before torch loads it (the torch runtime's ``vet``).

A ``.pt2`` reaches ``torch.load(weights_only=False)`` for pickled payloads, legacy weight files and sample
inputs that the restricted unpickler refuses; it names the callables its graph calls (any attribute path
under ``torch``) and its shape expressions go through ``sympy.sympify``, which evaluates Python. Both
formats can call the operators that read and write files (``torch.save``, ``torch.from_file``). Each is
refused here with ``UnsafeFormat``; importing this module does not import torch.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import zipfile
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput, UnsafeFormat

# operators that read or write files: a model that calls one is refused, whatever else it does
FILE_OPERATORS = frozenset({"aten::save", "aten::from_file", "debugprims::load_tensor"})


_FILE_OPERATOR_WORDS = re.compile(r"\b(save|from_file|load_tensor)\b")


# what torch's export serializer writes into shape expressions (sympy ``srepr`` and ``str`` forms)
_SYMPY_CALLS = frozenset(
    ("Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "Eq", "Ne",
     "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan",
     "GreaterThan", "And", "Or", "Not", "Xor", "Piecewise", "ExprCondPair", "floor", "ceiling", "sqrt",
     # torch.utils._sympy.functions, as torch's deserializer lists them
     "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
     "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
     "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
     "ToFloat", "Identity")
)  # fmt: skip


_SYMPY_CONSTANTS = frozenset({"True", "False", "true", "false", "oo", "zoo", "nan", "int_oo"})


_SYMBOL_NAME = re.compile(r"^[A-Za-z]{1,8}[0-9]{1,9}$")


# strings are symbol names and numbers (sympy parses some, e.g. Max's arguments, as expressions too)
_SAFE_STRING = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9_]{0,63}|[+-]?[0-9]{0,40}\.?[0-9]{1,40}(?:e[+-]?[0-9]{1,4})?)$"
)


_AST_NODES = (
    ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.keyword, ast.Tuple, ast.UnaryOp,
    ast.BinOp, ast.Compare, ast.BoolOp, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)  # fmt: skip


_MAX_EXPRESSION = 4096


_MAX_MEMBER = 1 << 30  # bytes of a program, config or sample-inputs member read whole


def single_top(names: list[str]) -> str | None:
    tops = {n.split("/", 1)[0] for n in names}
    return tops.pop() if len(tops) == 1 and all("/" in n for n in names) else None


def vet_script_code(path: Path) -> None:
    """Before loading (which runs the program's ``__setstate__``): no file operator in its code."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if "/code/" in info.filename and info.filename.endswith(".py"):
                found = _FILE_OPERATOR_WORDS.search(_read_member(zf, info).decode("utf-8", "replace"))
                if found:
                    raise UnsafeFormat(
                        f"the TorchScript program calls {found.group(1)!r}, an operator that reads or writes "
                        "files; modelport does not run such programs"
                    )


def check_script_graph(module: Any) -> None:
    for node in module.forward.inlined_graph.nodes():
        if node.kind() in FILE_OPERATORS:
            raise UnsafeFormat(f"the TorchScript program calls {node.kind()}, which reads or writes files")


def vet_pt2(path: Path) -> None:
    """Refuse a ``.pt2`` that would make ``torch.export.load`` run code: read every part it would read."""
    import torch
    from torch.export.pt2_archive import constants as pt2

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        top = single_top(names)
        if top is None:
            raise InvalidInput("a .pt2 archive keeps all its members in one top folder")
        # torch's reader finds members case-insensitively: one spelling each, read the way torch reads
        members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if info.filename.lower() in members:
                raise UnsafeFormat(f"the .pt2 archive holds {info.filename!r} twice")
            members[info.filename.lower()] = info
        inside = [n[len(top) + 1 :] for n in names]

        def read(name: str) -> bytes:
            info = members.get(f"{top}/{name}".lower())
            if info is None:
                raise InvalidInput(f"the .pt2 archive has no {name}")
            return _read_member(zf, info)

        if any(n.lower().startswith(pt2.AOTINDUCTOR_DIR) for n in inside):
            raise UnsafeFormat(
                "the .pt2 archive holds AOTInductor-compiled code (a shared library), which modelport never "
                "loads; save the program with torch.export.save"
            )
        if read(pt2.ARCHIVE_FORMAT_PATH).strip() != pt2.ARCHIVE_FORMAT_VALUE.encode():
            raise InvalidInput("the archive is not a torch.export program (archive_format)")
        prefix, suffix = pt2.MODELS_FILENAME_FORMAT.split("{}")
        lowered = {n.lower() for n in inside}
        for model in (n[len(prefix) : -len(suffix)] for n in inside if n.startswith(pt2.MODELS_DIR)):
            for legacy in (f"{pt2.WEIGHTS_DIR}{model}.pt", f"{pt2.CONSTANTS_DIR}{model}.pt"):
                if legacy.lower() in lowered:
                    raise UnsafeFormat(
                        f"the .pt2 archive holds {legacy}, a pickled payload (legacy format) that torch "
                        "loads with full pickle, which can run code; save it again with torch.export.save"
                    )
            _check_payloads(read(pt2.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model)), "weight", None)
            _check_payloads(
                read(pt2.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model)),
                "constant",
                pt2.TENSOR_CONSTANT_FILENAME_PREFIX,
            )
            samples = read(pt2.SAMPLE_INPUTS_FILENAME_FORMAT.format(model))
            if samples:
                try:
                    torch.load(io.BytesIO(samples), weights_only=True)
                except Exception:  # whatever the restricted unpickler refused, torch retries with full pickle
                    raise UnsafeFormat(
                        f"the .pt2 archive's sample inputs "
                        f"({pt2.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)}) load only with full pickle, "
                        "which can run code; export with tensor sample inputs"
                    ) from None
            try:
                program = json.loads(read(pt2.MODELS_FILENAME_FORMAT.format(model)))
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput(f"the .pt2 archive's program {model!r} is not JSON") from None
            _check_program(program)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member torch would read whole, bounded: a compressed member may claim any size."""
    with zf.open(info) as f:
        data = f.read(_MAX_MEMBER + 1)
    if len(data) > _MAX_MEMBER:
        raise InvalidInput(f"the archive's {info.filename!r} is larger than {_MAX_MEMBER >> 20} MiB")
    return data


def _check_payloads(config_bytes: bytes, kind: str, prefix: str | None) -> None:
    """Every weight and constant is a plain tensor payload: none pickled, no custom or opaque object."""
    try:
        config = json.loads(config_bytes).get("config")
    except (ValueError, UnicodeDecodeError, AttributeError):
        config = None
    if not isinstance(config, dict):
        raise InvalidInput(f"the .pt2 archive's {kind} config cannot be read")
    for fqn, payload in config.items():
        if not isinstance(payload, dict) or not isinstance(payload.get("path_name"), str):
            raise InvalidInput(f"the .pt2 archive's {kind} config has a malformed entry {str(fqn)[:100]!r}")
        if payload.get("use_pickle", False) is not False:
            raise UnsafeFormat(
                f"the .pt2 archive stores {kind} {str(fqn)[:100]!r} as a pickle, which torch loads with full "
                "pickle and can run code; modelport serves programs whose weights are plain tensors"
            )
        if prefix is not None and not payload["path_name"].startswith(prefix):
            raise UnsafeFormat(
                f"the .pt2 archive holds {kind} {str(fqn)[:100]!r}, an object that is not a tensor; "
                "modelport serves programs whose constants are plain tensors"
            )


def _check_program(program: Any) -> None:
    """Every operator the graph calls is a registered torch operator (torch resolves any name under
    ``torch``, e.g. ``torch.os.system``), none touches files, and every shape expression is arithmetic."""
    stack = [program]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(value, str):
                    stack.append(value)
                elif key in ("target", "as_operator"):
                    _check_operator(value)
                elif key == "expr_str":
                    _check_expression(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_operator(target: str) -> None:
    import math
    import operator

    import torch
    from torch._export.serde.serialize import _SYM_OPS

    refusal = UnsafeFormat(
        f"the program calls {target[:100]!r}, which is not a torch operator; modelport serves programs made "
        "of registered torch operators"
    )
    roots = {"_operator": operator, "torch": torch, "math": math}
    root = next((module for prefix, module in roots.items() if target.startswith(prefix)), None)
    parts = target.split(".")[1:]
    if root is None or any(not p.isidentifier() or p.startswith("__") for p in parts):
        raise refusal
    resolved: Any = root
    try:  # the same walk as torch's deserializer
        for part in parts:
            resolved = getattr(resolved, part)
    except Exception:
        raise refusal from None
    if isinstance(resolved, torch._ops.OpOverload):
        if resolved._schema.name in FILE_OPERATORS:
            raise UnsafeFormat(f"the program calls {resolved._schema.name}, which reads or writes files")
        return
    if isinstance(resolved, torch._ops.HigherOrderOperator):
        return
    try:
        if resolved in _SYM_OPS:
            return
    except TypeError:  # unhashable
        pass
    raise refusal


def _check_expression(text: str) -> None:
    """torch parses shape expressions with ``sympy.sympify``, which evaluates Python: allow arithmetic on
    symbols and sympy's own functions only (no attribute, no builtin, no lambda)."""
    refusal = UnsafeFormat(f"the program holds a shape expression that is not arithmetic: {text[:100]!r}")
    if len(text) > _MAX_EXPRESSION:
        raise refusal
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise refusal from None
    for node in ast.walk(tree):
        if not isinstance(node, _AST_NODES):
            raise refusal
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS
        ):
            raise refusal
        if isinstance(node, ast.Name) and not (
            node.id in _SYMPY_CALLS or node.id in _SYMPY_CONSTANTS or _SYMBOL_NAME.match(node.id)
        ):
            raise refusal
        if isinstance(node, ast.keyword) and (node.arg is None or keyword.iskeyword(node.arg)):
            raise refusal
        if isinstance(node, ast.Constant) and not (
            isinstance(node.value, (bool, float))
            or (isinstance(node.value, int) and abs(node.value) < 2**63)
            or (isinstance(node.value, str) and _SAFE_STRING.match(node.value))
        ):
            raise refusal
