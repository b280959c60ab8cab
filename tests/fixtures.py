"""Models trained here on scikit-learn's bundled datasets, written in each framework's safe format."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelport.runtimes.base import Batching, Capabilities, LoadOptions, MemoryUse, Placement, RuntimeBase

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
CANCER_X, CANCER_Y = load_breast_cancer(return_X_y=True)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)


@functools.cache
def iris_forest():  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=10, random_state=0).fit(IRIS_X, IRIS_Y)


@functools.cache
def cancer_logreg():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(CANCER_X, CANCER_Y)


def write_skops(model: object, path: Path) -> Path:
    import skops.io

    skops.io.dump(model, path)
    return path


def write_onnx(model: object, path: Path, width: int = 30) -> Path:
    from skl2onnx import to_onnx

    onx = to_onnx(model, np.zeros((1, width), dtype=np.float32), options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


def write_xgboost(path: Path) -> Path:
    import xgboost

    xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(IRIS_X, IRIS_Y).save_model(path)
    return path


def write_lightgbm(path: Path, classifier: bool = False) -> Path:
    import lightgbm

    if classifier:
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(CANCER_X, CANCER_Y)
    else:
        model = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(DIABETES_X, DIABETES_Y)
    model.booster_.save_model(path)
    return path


def onnx_with_external_data(location: str) -> bytes:
    """y = x @ W where W (1x2, ones) claims to be stored in the file ``location``."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((1, 2), dtype=np.float32), "W")
    weights.data_location = TensorProto.EXTERNAL
    del weights.external_data[:]
    weights.external_data.add(key="location", value=location)
    weights.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class Canary:
    """A pickle whose loading writes a file: proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.target, "pwned"))


def write_pickle(path: Path, canary: Path) -> Path:
    path.write_bytes(pickle.dumps(Canary(canary)))
    return path


class FakeRuntime(RuntimeBase):
    """A test runtime (MLServer's pattern): ``y = 2 * x`` with a configurable delay and failure.

    Its artifact is ``modelport-fake:`` followed by JSON, e.g. ``{"delay": 0.2, "width": 3}``. Rows with a
    negative first value make ``predict`` raise, to show that one request's error stays its own. Every call
    is recorded in ``calls`` (batch sizes).
    """

    framework = "fake"
    MAGIC = b"modelport-fake:"
    calls: list[int] = []  # noqa: RUF012 - shared on purpose: tests read what the server did

    def __init__(self) -> None:
        self.config: dict[str, float] = {}

    @classmethod
    def recognise(cls, path: Path) -> bool:
        with path.open("rb") as f:
            return f.read(len(cls.MAGIC)) == cls.MAGIC

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        import json

        (path,) = [p for p in artifact_dir.rglob("*") if p.is_file() and self.recognise(p)]
        self.config = json.loads(path.read_bytes()[len(self.MAGIC) :] or b"{}")

    def signature(self):  # type: ignore[no-untyped-def]
        from modelport.runtimes.base import Signature, TensorSpec

        width = int(self.config.get("width", 3))
        return Signature((TensorSpec("x", "FP64", (-1, width)),), (TensorSpec("y", "FP64", (-1, width)),))

    def predict(self, inputs, outputs=None):  # type: ignore[no-untyped-def]
        import time

        x = inputs["x"]
        FakeRuntime.calls.append(len(x))
        time.sleep(float(self.config.get("delay", 0)))
        if len(x) and (x[:, 0] < 0).any():
            raise ValueError("negative first value")
        with np.errstate(over="ignore"):  # 2 * 1e308 is inf: tests use it to make a non-finite output
            return {"y": x * 2}

    def unload(self) -> None:
        self.config = {}


def fake_artifact(**config: float) -> bytes:
    return fake_artifact_of(FakeRuntime, **config)


class FakeProcessRuntime(FakeRuntime):
    """The same fake model, declared as holding the GIL: modelport runs it in a worker process."""

    framework = "fake-proc"
    MAGIC = b"modelport-fake-proc:"
    capabilities = Capabilities(placement=Placement.PROCESS)


class FakeTokenRuntime(FakeRuntime):
    """Batched by a token budget: ``max_batch_size`` counts the elements of a batch, not its rows."""

    framework = "fake-tokens"
    MAGIC = b"modelport-fake-tokens:"
    capabilities = Capabilities(batching=Batching.TOKENS)


class FakeUnbatchedRuntime(FakeRuntime):
    """Never batched: each request is one call; ``peak`` is the most calls seen running at once."""

    framework = "fake-unbatched"
    MAGIC = b"modelport-fake-unbatched:"
    capabilities = Capabilities(batching=Batching.NONE)
    running = 0
    peak = 0

    def predict(self, inputs, outputs=None):  # type: ignore[no-untyped-def]
        cls = FakeUnbatchedRuntime
        cls.running += 1
        cls.peak = max(cls.peak, cls.running)
        try:
            return super().predict(inputs, outputs)
        finally:
            cls.running -= 1


class OwnScheduler:
    """A runtime's own scheduler (as continuous batching would be): answers ``y = 3 * x`` itself."""

    def __init__(self) -> None:
        self.submitted = 0
        self.policy: object = None
        self.closed = False
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    async def submit(self, inputs, outputs=None, timeout=None):  # type: ignore[no-untyped-def]
        self.submitted += 1
        return {"y": inputs["x"] * 3}

    def wait_idle(self, timeout: float) -> bool:
        return True

    def configure(self, policy: object) -> None:
        self.policy = policy

    def close(self) -> None:
        self.closed = True


class FakeSchedulingRuntime(FakeRuntime):
    framework = "fake-own"
    MAGIC = b"modelport-fake-own:"
    capabilities = Capabilities(batching=Batching.OWN)
    schedulers: list[OwnScheduler] = []  # noqa: RUF012 - tests read what the server made

    def scheduler(self, executor: object, policy: object, report: object) -> OwnScheduler:
        made = OwnScheduler()
        FakeSchedulingRuntime.schedulers.append(made)
        return made


class FakeGpuRuntime(FakeRuntime):
    """Runs on a GPU only; reports ``gpu_mb`` MB of GPU memory once loaded, and the device it got."""

    framework = "fake-gpu"
    MAGIC = b"modelport-fake-gpu:"
    capabilities = Capabilities(devices=("cuda",))
    devices: list[str] = []  # noqa: RUF012
    full = False  # a test sets it: the next loads find no room on the GPU

    def load(self, artifact_dir: Path, options: LoadOptions) -> None:
        from modelport.errors import OutOfMemory

        if FakeGpuRuntime.full:
            raise OutOfMemory(f"not enough memory on {options.device} to load the model")
        super().load(artifact_dir, options)
        FakeGpuRuntime.devices.append(options.device)

    def memory(self) -> MemoryUse:
        return MemoryUse(host=0, gpu=int(self.config.get("gpu_mb", 0) * 1024 * 1024))


FAKES: dict[str, type[FakeRuntime]] = {
    cls.framework: cls
    for cls in (
        FakeRuntime,
        FakeProcessRuntime,
        FakeTokenRuntime,
        FakeUnbatchedRuntime,
        FakeSchedulingRuntime,
        FakeGpuRuntime,
    )
}


def fake_artifact_of(cls: type[FakeRuntime], **config: float) -> bytes:
    import json

    return cls.MAGIC + json.dumps(config).encode()
