"""The Router: which version serves a request for ``model`` + ``alias|version``.

A ``Route`` is the policy that an alias (or a version number, or the default) stands for. Today every
route is the trivial policy, one version taking all traffic; weighted splits, sticky keys and shadows
become other ``Route`` kinds without any surface changing. Routes are resolved from the registry once
and kept per process; ``refresh`` re-resolves them when the change feed says the registry moved, loading
each new target before the route switches to it, so no request waits on a load or fails during a swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modelport.constants import DEFAULT_ALIAS
from modelport.errors import ModelportError, NotFound, NotReady
from modelport.limits import MAX_VERSION
from modelport.names import NAME_PATTERN
from modelport.registry import Registry, VersionRecord, VersionState

log = logging.getLogger("modelport.router")
Ref = tuple[str, str | None]  # (model, version number or alias name; None for the default)


@dataclass(frozen=True)
class Route:
    """One version serving everything the reference names."""

    model: str
    ref: str | None
    target: VersionRecord

    def pick(self, key: str | None = None) -> VersionRecord:
        """The version for one request; ``key`` (e.g. a user id) is for sticky policies."""
        return self.target

    def versions(self) -> tuple[VersionRecord, ...]:
        """Every version this route may send a request to (each must be loaded before it switches)."""
        return (self.target,)


class Router:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._routes: dict[Ref, Route] = {}
        self._lock = threading.Lock()
        self._generation = 0  # moves on every refresh and invalidation

    # ---- resolution (blocking: registry reads) -------------------------------------------------
    def resolve(self, model: str, ref: str | None = None) -> VersionRecord:
        """``ref``: a version number, an alias name, or None for the default alias, else the newest ready
        version. Any state: metadata shows failed versions too."""
        models = self.registry.models
        if not NAME_PATTERN.fullmatch(model):
            raise NotFound(f"model {model!r} not found")
        if not ref:
            alias = self.registry.aliases.find(model, DEFAULT_ALIAS)
            if alias is not None:
                return models.get_version(model, alias.version)
            newest = models.newest_ready(model)  # 404 when the model itself is unknown
            if newest is None:
                raise NotReady(f"model {model!r} has no ready version")
            return newest
        if ref.isascii() and ref.isdigit():
            if len(ref) > len(str(MAX_VERSION)):  # no such version; and int() of a huge string is slow
                raise NotFound(f"version {ref[:20]}… of model {model!r} not found")
            return models.get_version(model, int(ref))
        if not NAME_PATTERN.fullmatch(ref):
            raise NotFound(f"version {ref!r} of model {model!r} not found")
        alias = self.registry.aliases.find(model, ref)
        if alias is None:
            models.get_model(model)
            raise NotFound(f"version or alias {ref!r} of model {model!r} not found")
        return models.get_version(model, alias.version)

    def route_for(self, model: str, ref: str | None = None) -> Route:
        """A route whose versions can serve now: ready, and the model not unloaded."""
        record = self.resolve(model, ref)
        if record.state is not VersionState.READY:
            reason = f": {record.error}" if record.error else ""
            raise NotReady(f"version {record.version} of {model!r} is {record.state.value}{reason}")
        if self.registry.models.get_model(model).unloaded:
            raise NotReady(f"model {model!r} is unloaded")
        return Route(model, ref or None, record)

    # ---- the per-process table -----------------------------------------------------------------
    def cached(self, model: str, ref: str | None) -> Route | None:
        return self._routes.get((model, ref or None))

    def lookup(self, model: str, ref: str | None) -> Route:
        """``route_for``, remembered unless a refresh or invalidation ran meanwhile: the registry may have
        moved after this read, and a route remembered then would stay stale until the next change."""
        generation = self._generation
        route = self.route_for(model, ref)
        with self._lock:
            if self._generation == generation:
                self._routes[(route.model, route.ref)] = route
        return route

    def invalidate(self, model: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            for key in [k for k in self._routes if model is None or k[0] == model]:
                self._routes.pop(key, None)

    def refresh(self, models: Iterable[str] | None, warm: Callable[[VersionRecord], object]) -> None:
        """Re-resolve the remembered routes of ``models`` (None: all). A route whose versions changed
        switches only after ``warm`` has loaded each of them; one that no longer resolves is dropped."""
        wanted = None if models is None else set(models)
        with self._lock:
            self._generation += 1
            for (model, ref), old in list(self._routes.items()):
                if wanted is not None and model not in wanted:
                    continue
                try:
                    new = self.route_for(model, ref)
                    if new.versions() != old.versions():
                        for record in new.versions():
                            warm(record)  # load and warm first ...
                except ModelportError as exc:
                    log.info("route %s/%s dropped: %s", model, ref or "", exc.message)
                    self._routes.pop((model, ref), None)
                    continue
                self._routes[(model, ref)] = new  # ... then switch
