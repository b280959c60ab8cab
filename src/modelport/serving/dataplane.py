"""The data plane: resolve ``model[/versions/{number|alias}]``, keep versions loaded, batch inference.

Resolution and keys are cached per process and refreshed by ``reconcile``, which runs every second and
watches the registry's generation (every change is audited, so the newest audit id moves on each one).
When a resolution changes, the new target is loaded and warmed before the cached pointer switches, and
requests already holding the old version finish on it: promotions and rollbacks drop no request, also in
the other worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelport.errors import InferenceFailed, InvalidInput, ModelportError, NotFound, NotReady
from modelport.names import NAME_PATTERN
from modelport.registry import Registry, VersionRecord, VersionState
from modelport.runtimes.base import Signature, Tensors
from modelport.serving.cache import ModelCache, ServedVersion
from modelport.serving.datatypes import numpy_dtype

DEFAULT_ALIAS = "production"
log = logging.getLogger("modelport.dataplane")
Ref = tuple[str, str | None]


@dataclass
class Prediction:
    version: VersionRecord
    outputs: Tensors


class DataPlane:
    def __init__(self, registry: Registry, cache: ModelCache, request_timeout: float = 30.0) -> None:
        self.registry = registry
        self.cache = cache
        self.request_timeout = request_timeout
        self._resolved: dict[Ref, VersionRecord] = {}
        self._unloaded: set[str] = set()  # models taken out of service via the repository extension
        self._generation = registry.generation()
        self._reconcile_lock = threading.Lock()
        self.on_change: list[Callable[[], None]] = []

    # ---- resolution (blocking: registry reads) -------------------------------------------------
    def resolve(self, model: str, ref: str | None = None) -> VersionRecord:
        """``ref``: a version number, an alias name, or None for ``production`` else the newest ready."""
        if not NAME_PATTERN.fullmatch(model):
            raise NotFound(f"model {model!r} not found")
        if not ref:
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

    def _resolve_and_remember(self, model: str, ref: str | None) -> VersionRecord:
        record = self.ready_version(model, ref)
        self._resolved[(model, ref or None)] = record
        return record

    # ---- inference ----------------------------------------------------------------------------
    async def predict(
        self,
        model: str,
        ref: str | None,
        inputs: Tensors,
        datatypes: dict[str, str],
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Prediction:
        record = self._resolved.get((model, ref or None))
        if record is None:
            record = await asyncio.to_thread(self._resolve_and_remember, model, ref)
        served = self.cache.peek((record.model, record.version))
        if served is None:
            served = await asyncio.to_thread(self.cache.get, record)
        prepared = conform_inputs(served.loaded.signature, inputs, datatypes)
        if outputs is not None:
            known = set(served.loaded.signature.output_names())
            unknown = [n for n in outputs if n not in known]
            if unknown:
                raise InvalidInput(
                    f"unknown output(s) {unknown}; model outputs {sorted(known)}", field="outputs"
                )
        limit = min(timeout, self.request_timeout) if timeout else self.request_timeout
        try:
            result = await served.batcher.submit(prepared, outputs, limit)
        except ModelportError:
            raise
        except ValueError as exc:  # frameworks report bad input values this way
            raise InvalidInput(f"the model rejected the input: {str(exc).splitlines()[0][:300]}") from None
        except Exception as exc:
            raise InferenceFailed(f"{record.framework} failed to predict: {type(exc).__name__}") from None
        return Prediction(record, result)

    def served(self, record: VersionRecord) -> ServedVersion:
        """Load (if needed) and return a version: a promotion calls this before moving the alias."""
        return self.cache.get(record)

    # ---- repository extension -----------------------------------------------------------------
    def load_model(self, model: str) -> VersionRecord:
        self._unloaded.discard(model)
        record = self.ready_version(model)
        self.cache.get(record)
        self.invalidate(model)
        return record

    def unload_model(self, model: str) -> None:
        self.registry.get_model(model)
        self._unloaded.add(model)
        self.invalidate(model)
        self.cache.evict(model)

    def is_unloaded(self, model: str) -> bool:
        return model in self._unloaded

    # ---- keeping up with the registry ---------------------------------------------------------
    def invalidate(self, model: str | None = None) -> None:
        for key in [k for k in self._resolved if model is None or k[0] == model]:
            self._resolved.pop(key, None)

    def reconfigure(self, record: VersionRecord) -> None:
        """New serving settings apply to a loaded version at once; no reload."""
        self.invalidate(record.model)
        served = self.cache.peek((record.model, record.version))
        if served is not None:
            served.loaded.record = record
            served.batcher.policy = self.cache.policy_for(record)

    def evict(self, model: str, version: int | None = None) -> None:
        self.invalidate(model)
        self.cache.evict(model, version)

    def reconcile(self) -> bool:
        """Re-resolve cached names when the registry changed; load new targets before switching."""
        with self._reconcile_lock:
            generation = self.registry.generation()
            if generation == self._generation:
                return False
            self._generation = generation
            for callback in self.on_change:
                callback()
            for (model, ref), old in list(self._resolved.items()):
                try:
                    new = self.ready_version(model, ref)
                except ModelportError:
                    self._resolved.pop((model, ref), None)
                    continue
                if new.version != old.version:
                    try:
                        self.cache.get(new)  # load and warm first ...
                    except ModelportError as exc:
                        log.warning("could not load %s v%d: %s", model, new.version, exc.message)
                        self._resolved.pop((model, ref), None)
                        continue
                    self._resolved[(model, ref)] = new  # ... then switch
            return True

    def close(self) -> None:
        self.cache.close()


def conform_inputs(signature: Signature, inputs: Tensors, datatypes: dict[str, str]) -> Tensors:
    """Check names, ranks and fixed dimensions; cast numeric inputs to the signature's datatype."""
    expected = {spec.name: spec for spec in signature.inputs}
    if inputs.keys() != expected.keys():
        unknown = [n for n in inputs if n not in expected]
        missing = [n for n in expected if n not in inputs]
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
            raise InvalidInput(
                f"input {name!r} must have shape {list(spec.shape)}, got {list(array.shape)}", field="inputs"
            )
        if array.ndim and array.shape[0] == 0:
            raise InvalidInput(f"input {name!r} has no rows", field="inputs")
        given = datatypes.get(name, spec.datatype)
        if (given == "BYTES") != (spec.datatype == "BYTES"):
            raise InvalidInput(f"input {name!r} must be {spec.datatype}, got {given}", field="inputs")
        if given != spec.datatype:
            array = array.astype(numpy_dtype(spec.datatype))
        out[name] = np.asarray(array)
    return out
