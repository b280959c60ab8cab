"""Which runtimes exist (entry-point group ``modelport.runtimes``) and which one an artifact needs."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

from modelport.constants import SAFE_FORMATS
from modelport.errors import InvalidInput, UnsupportedFormat
from modelport.runtimes.base import Capabilities, Runtime

log = logging.getLogger("modelport.runtimes")
ENTRY_POINT_GROUP = "modelport.runtimes"


class RuntimeCatalog:
    def __init__(self, runtimes: dict[str, type[Runtime]]) -> None:
        self.runtimes = runtimes

    @classmethod
    def from_entry_points(cls, *, allow_pickle: bool = False) -> RuntimeCatalog:
        """Every installed runtime; the pickle runtime only when an admin allowed it."""
        found: dict[str, type[Runtime]] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == "pickle" and not allow_pickle:
                continue
            try:
                runtime = ep.load()
            except ImportError:
                continue  # the framework's optional dependency is not installed
            if not isinstance(getattr(runtime, "capabilities", None), Capabilities):
                log.warning("runtime %r declares no Capabilities (runtime seam v2): not used", ep.name)
                continue
            found[ep.name] = runtime
        return cls(found)

    def get(self, framework: str) -> type[Runtime]:
        try:
            return self.runtimes[framework]
        except KeyError:
            known = ", ".join(sorted(self.runtimes))
            raise InvalidInput(
                f"unknown framework {framework!r}; known: {known}", field="framework"
            ) from None

    def detect(self, artifact_dir: Path, framework: str | None = None) -> str:
        """The framework of the model in ``artifact_dir``, recognised from file contents."""
        files = [p for p in sorted(artifact_dir.rglob("*")) if p.is_file()]
        if framework is not None:
            runtime = self.get(framework)
            if not any(runtime.recognise(p) for p in files):
                raise UnsupportedFormat(f"the artifact holds no {framework} model file", field="framework")
            return framework
        matches = {name for name, rt in self.runtimes.items() for p in files if rt.recognise(p)}
        if not matches:
            if any(p.name == "saved_model.pb" for p in files):
                raise UnsupportedFormat(
                    "TensorFlow SavedModels are not served (they need TensorFlow and can hold custom "
                    "ops); save the model as Keras 3 (model.save('model.keras')) or convert it to ONNX "
                    "(python -m tf2onnx.convert --saved-model DIR --output model.onnx) and push that"
                )
            raise UnsupportedFormat(f"unrecognised model format; supported formats: {SAFE_FORMATS}")
        if len(matches) > 1:
            raise InvalidInput(
                f"the artifact holds models of several frameworks ({', '.join(sorted(matches))}); "
                "say which with framework=",
                field="framework",
            )
        return matches.pop()
