"""Pickled / joblib scikit-learn models, for deployments that opt in with ``MODELPORT_ALLOW_PICKLE``.

Unpickling runs code chosen by whoever made the file. This runtime is only registered when an admin turns
pickle on, and it never loads in the server process: it declares ``Placement.SANDBOX``, so
``ProcessRuntime`` loads it in a child process that first confines itself (see ``runtimes/sandbox.py``).
It refuses to load anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from modelport.errors import LoadError
from modelport.runtimes.base import Capabilities, LoadOptions, Placement, find_model_file
from modelport.runtimes.sandbox import SANDBOX_ENV
from modelport.runtimes.sklearn import SklearnRuntime
from modelport.storage.sniff import is_pickled


class PickleRuntime(SklearnRuntime):
    framework: ClassVar[str] = "pickle"
    capabilities: ClassVar[Capabilities] = Capabilities(placement=Placement.SANDBOX, preload=("joblib",))

    @classmethod
    def recognise(cls, path: Path) -> bool:
        return is_pickled(path)

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        if os.environ.get(SANDBOX_ENV) != "1":
            raise LoadError("pickled models load only inside the sandboxed worker process")
        import joblib

        self._use(joblib.load(find_model_file(artifact_dir, type(self))))
