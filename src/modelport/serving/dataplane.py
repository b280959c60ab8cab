"""Resolve ``model[:version|@alias]`` to a ready version, load it on demand, validate and run a batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelport.errors import InferenceFailed, InvalidInput, ModelportError, NotFound, NotReady
from modelport.names import NAME_PATTERN
from modelport.registry import Registry, VersionRecord, VersionState
from modelport.repository import LoadedVersion, ModelRepository
from modelport.runtimes.base import Signature, Tensors

DEFAULT_ALIAS = "production"


@dataclass
class Prediction:
    version: VersionRecord
    outputs: Tensors


class DataPlane:
    def __init__(self, registry: Registry, repository: ModelRepository) -> None:
        self.registry = registry
        self.repository = repository
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._unloaded: set[str] = set()  # models taken out of service via the repository extension

    # ---- resolution ---------------------------------------------------------------------------
    def resolve(self, model: str, ref: str | None = None) -> VersionRecord:
        """``ref``: a version number, an alias name, or None for ``production`` else the newest ready."""
        if not NAME_PATTERN.fullmatch(model):
            raise NotFound(f"model {model!r} not found")
        if ref is None or ref == "":
            alias = self.registry.find_alias(model, DEFAULT_ALIAS)
            if alias is not None:
                return self.registry.get_version(model, alias.version)
            ready = self.registry.list_versions(model, state=VersionState.READY)
            if not ready:
                self.registry.get_model(model)  # 404 when the model itself is unknown
                raise NotReady(f"model {model!r} has no ready version")
            return ready[-1]
        if ref.isdigit():
            return self.registry.get_version(model, int(ref))
        if not NAME_PATTERN.fullmatch(ref):
            raise NotFound(f"version {ref!r} of model {model!r} not found")
        alias = self.registry.find_alias(model, ref)
        if alias is None:
            self.registry.get_model(model)
            raise NotFound(f"version or alias {ref!r} of model {model!r} not found")
        return self.registry.get_version(model, alias.version)

    def ready_version(self, model: str, ref: str | None = None) -> VersionRecord:
        record = self.resolve(model, ref)
        if record.state is not VersionState.READY:
            reason = f": {record.error}" if record.error else ""
            raise NotReady(f"version {record.version} of {model!r} is {record.state.value}{reason}")
        if model in self._unloaded:
            raise NotReady(f"model {model!r} is unloaded")
        return record

    # ---- cache --------------------------------------------------------------------------------
    def get_loaded(self, record: VersionRecord) -> LoadedVersion:
        key = (record.model, record.version)
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one load per version even when many first requests arrive together
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = self.repository.load(record)
                self._loaded[key] = loaded
        return loaded

    def load_model(self, model: str) -> VersionRecord:
        self._unloaded.discard(model)
        record = self.ready_version(model)
        self.get_loaded(record)
        return record

    def unload_model(self, model: str) -> None:
        self.registry.get_model(model)
        self._unloaded.add(model)
        self.evict(model)

    def evict(self, model: str, version: int | None = None) -> None:
        for key in [k for k in self._loaded if k[0] == model and (version is None or k[1] == version)]:
            loaded = self._loaded.pop(key, None)
            if loaded is not None:
                loaded.close()

    def is_loaded(self, model: str, version: int) -> bool:
        return (model, version) in self._loaded

    def is_unloaded(self, model: str) -> bool:
        return model in self._unloaded

    def close(self) -> None:
        for model in {k[0] for k in self._loaded}:
            self.evict(model)

    # ---- inference ----------------------------------------------------------------------------
    def predict(
        self,
        model: str,
        ref: str | None,
        inputs: Tensors,
        datatypes: dict[str, str],
        outputs: Sequence[str] | None = None,
    ) -> Prediction:
        record = self.ready_version(model, ref)
        loaded = self.get_loaded(record)
        prepared = conform_inputs(loaded.signature, inputs, datatypes)
        if outputs is not None:
            known = set(loaded.signature.output_names())
            unknown = [n for n in outputs if n not in known]
            if unknown:
                raise InvalidInput(
                    f"unknown output(s) {unknown}; model outputs {sorted(known)}", field="outputs"
                )
        try:
            return Prediction(record, loaded.runtime.predict(prepared, outputs))
        except ModelportError:
            raise
        except ValueError as exc:  # frameworks report bad input values this way
            raise InvalidInput(f"the model rejected the input: {str(exc).splitlines()[0][:300]}") from None
        except Exception as exc:
            raise InferenceFailed(f"{record.framework} failed to predict: {type(exc).__name__}") from None


def conform_inputs(signature: Signature, inputs: Tensors, datatypes: dict[str, str]) -> Tensors:
    """Check names, ranks and fixed dimensions; cast numeric inputs to the signature's datatype."""
    from modelport.serving.datatypes import numpy_dtype

    expected = {spec.name: spec for spec in signature.inputs}
    unknown = [n for n in inputs if n not in expected]
    missing = [n for n in expected if n not in inputs]
    if unknown or missing:
        raise InvalidInput(
            f"inputs must be {sorted(expected)}; unknown {unknown}, missing {missing}", field="inputs"
        )
    out: Tensors = {}
    for name, array in inputs.items():
        spec = expected[name]
        if spec.shape and (
            array.ndim != len(spec.shape)
            or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True))
        ):
            shown = [d if d >= 0 else -1 for d in spec.shape]
            raise InvalidInput(
                f"input {name!r} must have shape {shown}, got {list(array.shape)}", field="inputs"
            )
        given = datatypes.get(name, spec.datatype)
        if (given == "BYTES") != (spec.datatype == "BYTES"):
            raise InvalidInput(f"input {name!r} must be {spec.datatype}, got {given}", field="inputs")
        if given != spec.datatype:
            array = array.astype(numpy_dtype(spec.datatype))
        out[name] = np.asarray(array)
    return out
