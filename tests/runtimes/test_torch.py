"""PyTorch programs (TorchScript with a signature.json, torch.export .pt2) pushed and served over HTTP, and
the archives ``vet`` refuses before anything is stored: wrong signatures, pickles, and .pt2 parts that
would make torch run code."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from modelport.errors import InvalidInput
from modelport.runtimes.base import LoadOptions
from modelport.runtimes.catalog import RuntimeCatalog
from modelport.runtimes.torch import TorchRuntime
from modelport.server import Services
from tests.conftest import AUTH, RunningServer, push
from tests.conftest import infer_json as infer

SMALL_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}],
}
SECOND = {"name": "y", "datatype": "FP32", "shape": [-1, 4]}
MIXED_SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3, 4]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, 2]},
        {"name": "mask", "datatype": "BOOL", "shape": [-1, 3]},
    ],
    "outputs": [
        {"name": "features", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "id_sum", "datatype": "INT64", "shape": [-1]},
    ],
}


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)
        self.register_buffer("offset", torch.linspace(-1.0, 1.0, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x)) + self.offset


class Mixed(torch.nn.Module):
    """A rank-3 FP32 input, INT64 ids and a BOOL mask; two outputs of different dtypes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embedding = torch.nn.Embedding(10, 3)

    def forward(
        self, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = x.mean(dim=-1) * mask.to(x.dtype) + self.embedding(ids).sum(dim=1)
        return features, ids.sum(dim=1)


class Named(torch.nn.Module):
    """Returns a dict: served by the signature's names, whatever the dict's order."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": x.sum(dim=1), "doubled": x * 2}


class Brain(torch.nn.Module):
    """Takes and returns bfloat16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 3


class FileWriter(torch.nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.target)
        return x


def script_archive(path: Path, module: torch.nn.Module, signature: Any | None) -> Path:
    """A tar.gz archive: the TorchScript program and, when given, its signature.json beside it."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    with tarfile.open(path, "w:gz") as tar:
        members = {"model/program.pt": buffer.getvalue()}
        if signature is not None:
            text = signature if isinstance(signature, str) else json.dumps(signature)
            members["model/signature.json"] = text.encode()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def export_program(path: Path, module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Path:
    batch = torch.export.Dim("batch")
    dynamic = tuple({0: batch} for _ in example)
    torch.export.save(torch.export.export(module.eval(), example, dynamic_shapes=dynamic), path)
    return path


def edit_zip(
    source: Path, target: Path, edit: Callable[[str, bytes], bytes | None], extra: dict[str, bytes]
) -> Path:
    """A copy of the zip with each member passed through ``edit`` (None drops it), plus ``extra``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        top = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            data = edit(info.filename[len(top) + 1 :], src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
        for name, data in extra.items():
            dst.writestr(f"{top}/{name}", data)
    return target


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("torch")
    return {
        "small.tgz": script_archive(d / "small.tgz", Small(), SMALL_SIGNATURE),
        "mixed.tgz": script_archive(d / "mixed.tgz", Mixed(), MIXED_SIGNATURE),
        "small.pt2": export_program(d / "small.pt2", Small(), (torch.randn(2, 4),)),
        "mixed.pt2": export_program(
            d / "mixed.pt2",
            Mixed(),
            (torch.randn(2, 3, 4), torch.randint(0, 10, (2, 2)), torch.ones(2, 3, dtype=torch.bool)),
        ),
    }


def mixed_inputs(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    return {
        "x": rng.normal(size=(rows, 3, 4)).astype(np.float32),
        "ids": rng.integers(0, 10, size=(rows, 2)).astype(np.int64),
        "mask": rng.random((rows, 3)) > 0.5,
    }


def test_torch_archives_are_recognised_by_torch_alone(programs: dict[str, Path], tmp_path: Path) -> None:
    catalog = RuntimeCatalog.from_entry_points()
    with tarfile.open(programs["small.tgz"]) as tar:
        tar.extractall(tmp_path, filter="data")
    for path in (tmp_path / "model" / "program.pt", programs["small.pt2"]):
        assert {name for name, rt in catalog.runtimes.items() if rt.recognise(path)} == {"torch"}
    assert not TorchRuntime.recognise(tmp_path / "model" / "signature.json")


def test_torchscript_with_its_signature_is_served(api: TestClient, programs: dict[str, Path]) -> None:
    version = push(api, "small", programs["small.tgz"]).json()
    assert (version["state"], version["framework"]) == ("ready", "torch"), version
    assert version["signature"] == SMALL_SIGNATURE
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    served = infer(api, "small", {"x": x}, {"x": "FP32"})
    expected = Small()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(served["scores"], expected, atol=1e-5)
    # rows batched together give each row's own answer
    for i in (0, 5):
        alone = infer(api, "small", {"x": x[i : i + 1]}, {"x": "FP32"})
        np.testing.assert_allclose(alone["scores"][0], served["scores"][i], atol=1e-6)
    only = api.post(
        "/v2/models/small/infer",
        json={
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}],
            "outputs": [{"name": "nope"}],
        },
    )
    assert only.status_code == 400 and "nope" in only.text


def test_export_program_declares_its_own_signature(api: TestClient, programs: dict[str, Path]) -> None:
    version = push(api, "exported", programs["small.pt2"]).json()
    assert (version["state"], version["framework"]) == ("ready", "torch"), version
    assert version["signature"] == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, 3]}],
    }
    for rows in (1, 7):  # the batch dimension is dynamic
        x = np.random.default_rng(rows).normal(size=(rows, 4)).astype(np.float32)
        served = infer(api, "exported", {"x": x}, {"x": "FP32"})
        np.testing.assert_allclose(
            served["output-0"], Small()(torch.from_numpy(x)).detach().numpy(), atol=1e-5
        )
    wrong = api.post(
        "/v2/models/exported/infer",
        json={"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0.0] * 5}]},
    )
    assert wrong.status_code == 400 and "shape" in wrong.text


@pytest.mark.parametrize("artifact", ["mixed.tgz", "mixed.pt2"])
def test_inputs_of_several_dtypes_and_ranks(
    api: TestClient, programs: dict[str, Path], artifact: str
) -> None:
    version = push(api, "mixed", programs[artifact]).json()
    assert version["state"] == "ready", version
    datatypes = {t["name"]: t["datatype"] for t in version["signature"]["inputs"]}
    assert datatypes == {"x": "FP32", "ids": "INT64", "mask": "BOOL"}
    assert [t["shape"] for t in version["signature"]["inputs"]] == [[-1, 3, 4], [-1, 2], [-1, 3]]
    inputs = mixed_inputs(5)
    served = infer(api, "mixed", inputs, datatypes)
    features, id_sum = Mixed()(*(torch.from_numpy(a) for a in inputs.values()))
    names = [t["name"] for t in version["signature"]["outputs"]]
    np.testing.assert_allclose(served[names[0]], features.detach().numpy(), atol=1e-5)
    assert served[names[1]].tolist() == id_sum.tolist()
    assert [t["datatype"] for t in version["signature"]["outputs"]] == ["FP32", "INT64"]


def test_a_version_can_compute_in_bfloat16(api: TestClient, programs: dict[str, Path]) -> None:
    version = push(api, "half", programs["small.pt2"], dtype="bfloat16").json()
    assert version["state"] == "ready", version
    assert version["signature"]["outputs"][0]["datatype"] == "FP32"  # bfloat16 results are served as float32
    x = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    served = infer(api, "half", {"x": x}, {"x": "FP32"})
    expected = Small()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(served["output-0"], expected, atol=0.03, rtol=0.02)
    assert not np.allclose(served["output-0"], expected, atol=1e-6)  # really computed in bfloat16


def test_dict_outputs_by_name_and_bfloat16_tensors(tmp_path: Path) -> None:
    named = tmp_path / "named"
    named.mkdir()
    torch.jit.save(torch.jit.script(Named()), named / "program.pt")
    signature = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}],
        "outputs": [
            {"name": "doubled", "datatype": "FP64", "shape": [-1, 2]},
            {"name": "total", "datatype": "FP64", "shape": [-1]},
        ],
    }
    (named / "signature.json").write_text(json.dumps(signature))
    TorchRuntime.vet(named, LoadOptions())
    runtime = TorchRuntime()
    runtime.load(named, LoadOptions())
    out = runtime.predict({"x": np.array([[1.0, 2.0]])})
    assert out["doubled"].tolist() == [[2.0, 4.0]] and out["total"].tolist() == [3.0]

    brain = tmp_path / "brain"
    brain.mkdir()
    export_program(brain / "brain.pt2", Brain(), (torch.ones(2, 2, dtype=torch.bfloat16),))
    runtime = TorchRuntime()
    runtime.load(brain, LoadOptions())
    assert runtime.signature().as_dict() == {
        "inputs": [{"name": "x", "datatype": "BF16", "shape": [-1, 2]}],
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, 2]}],  # numpy has no bfloat16
    }
    out = runtime.predict({"x": np.array([[1.5, -2.0]], dtype=np.float32)})  # BF16 arrives as float32
    assert out["output-0"].dtype == np.float32 and out["output-0"].tolist() == [[4.5, -6.0]]


def test_bfloat16_inputs_over_http(api: TestClient, tmp_path: Path) -> None:
    program = export_program(tmp_path / "brain.pt2", Brain(), (torch.ones(2, 2, dtype=torch.bfloat16),))
    version = push(api, "brain", program).json()
    assert version["state"] == "ready", version
    assert version["signature"]["inputs"] == [{"name": "x", "datatype": "BF16", "shape": [-1, 2]}]
    served = infer(api, "brain", {"x": np.array([[1.5, -2.0], [0.25, 8.0]])}, {"x": "BF16"})
    assert served["output-0"].tolist() == [[4.5, -6.0], [0.75, 24.0]]


def test_signature_json_renames_an_export_programs_tensors(programs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "model.pt2").write_bytes(programs["small.pt2"].read_bytes())
    (tmp_path / "signature.json").write_text(json.dumps(SMALL_SIGNATURE))
    TorchRuntime.vet(tmp_path, LoadOptions())
    runtime = TorchRuntime()
    runtime.load(tmp_path, LoadOptions())
    assert runtime.signature().as_dict() == SMALL_SIGNATURE
    assert runtime.predict({"x": np.zeros((2, 4), dtype=np.float32)})["scores"].shape == (2, 3)
    misfit = {**SMALL_SIGNATURE, "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 4]}]}
    (tmp_path / "signature.json").write_text(json.dumps(misfit))
    with pytest.raises(InvalidInput, match="does not fit the program: 'x' is declared INT64"):
        TorchRuntime.vet(tmp_path, LoadOptions())


def test_runtime_casts_to_the_declared_dtypes(programs: dict[str, Path], tmp_path: Path) -> None:
    """Float16 compute on the runtime directly; a read-only input (as the binary codec gives) is accepted."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "model.pt2").write_bytes(programs["small.pt2"].read_bytes())
    runtime = TorchRuntime()
    runtime.load(tmp_path / "v", LoadOptions(dtype="float16"))
    x = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    x.flags.writeable = False
    out = runtime.predict({"x": x})["output-0"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, Small()(torch.from_numpy(x.copy())).detach().numpy(), atol=0.01)
    assert runtime.memory().host == (4 * 3 + 3 + 3) * 2  # parameters and buffer in float16
    runtime.unload()
    assert runtime.memory().host == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("artifact", ["small.tgz", "small.pt2"])
def test_runs_on_the_gpu(programs: dict[str, Path], tmp_path: Path, artifact: str) -> None:
    target = tmp_path / "v"
    target.mkdir()
    if artifact.endswith(".tgz"):
        with tarfile.open(programs[artifact]) as tar:
            tar.extractall(target, filter="data")
    else:
        (target / "model.pt2").write_bytes(programs[artifact].read_bytes())
    runtime = TorchRuntime()
    runtime.load(target, LoadOptions(device="cuda"))
    assert runtime.memory().gpu > 0
    name = runtime.signature().outputs[0].name
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        runtime.predict({"x": x})[name], Small()(torch.from_numpy(x)).detach().numpy(), atol=1e-4
    )
    runtime.unload()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_against_a_real_server(
    server: RunningServer, programs: dict[str, Path], binary: bool
) -> None:
    import tritonclient.http as triton

    pushed = httpx.post(
        f"{server.url}/api/v1/models/tiny/versions",
        content=programs["mixed.pt2"].read_bytes(),
        params={"filename": "mixed.pt2"},
        headers={**AUTH, "Content-Type": "application/octet-stream"},
        timeout=120,
    )
    assert pushed.status_code == 201 and pushed.json()["state"] == "ready", pushed.text
    httpx.put(f"{server.url}/api/v1/models/tiny/aliases/production", json={"version": 1}, headers=AUTH)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    inputs = mixed_inputs(4)
    wire = []
    for name, datatype in (("x", "FP32"), ("ids", "INT64"), ("mask", "BOOL")):
        tensor = triton.InferInput(name, list(inputs[name].shape), datatype)
        tensor.set_data_from_numpy(inputs[name], binary_data=binary)
        wire.append(tensor)
    wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("output-0", "output-1")]
    result = client.infer("tiny", wire, outputs=wanted, headers=dict(AUTH))
    features, id_sum = Mixed()(*(torch.from_numpy(a) for a in inputs.values()))
    np.testing.assert_allclose(result.as_numpy("output-0"), features.detach().numpy(), atol=1e-5)
    assert result.as_numpy("output-1").tolist() == id_sum.tolist()
    assert client.get_model_metadata("tiny", headers=dict(AUTH))["platform"] == "torch"
    client.close()


# ---- refusals: a 4xx, and nothing stored ------------------------------------------------------------------
def refused(api: TestClient, services: Services, model: str, path: Path, code: str) -> str:
    r = push(api, model, path)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    assert api.get(f"/api/v1/models/{model}").status_code == 404  # no model, no version
    assert list(services.repository.store.digests()) == []
    return str(error["message"])


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        (None, ["signature.json", '"datatype"']),
        ({**SMALL_SIGNATURE, "inputs": [*SMALL_SIGNATURE["inputs"], SECOND]}, ["does not fit", "2 inputs"]),
        ({**SMALL_SIGNATURE, "inputs": [{"name": "x", "datatype": "FLOAT", "shape": [-1, 4]}]}, ["'FLOAT'"]),
        (
            {**SMALL_SIGNATURE, "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 5]}]},
            ["does not fit"],
        ),
        (
            {**SMALL_SIGNATURE, "outputs": [*SMALL_SIGNATURE["outputs"], SECOND]},
            ["does not fit", "2 outputs"],
        ),
        ("[1, 2]", ["JSON object"]),
    ],
)
def test_torchscript_signature_must_fit(
    api: TestClient, services: Services, tmp_path: Path, signature: Any, words: list[str]
) -> None:
    archive = script_archive(tmp_path / "bad.tgz", Small(), signature)
    message = refused(api, services, "bad", archive, "invalid_input")
    assert all(w in message for w in words), message


def test_torch_save_pickles_stay_refused(api: TestClient, services: Services, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(Small().state_dict(), path)
    assert "pickle" in refused(api, services, "pickled", path, "unsafe_format")
    torch.save(Small(), path)  # a whole module: a pickle of its class
    refused(api, services, "pickled", path, "unsafe_format")


def test_programs_that_touch_files_are_refused_unrun(
    api: TestClient, services: Services, tmp_path: Path
) -> None:
    canary = tmp_path / "written.pt"
    archive = script_archive(tmp_path / "writer.tgz", FileWriter(str(canary)), SMALL_SIGNATURE)
    assert "files" in refused(api, services, "writer", archive, "unsafe_format")
    assert not canary.exists()


def _pickled_weights(name: str, data: bytes) -> bytes | None:
    if name == "data/weights/model_weights_config.json":
        config = json.loads(data)
        next(iter(config["config"].values()))["use_pickle"] = True
        return json.dumps(config).encode()
    return data


def _operator(target: str) -> Callable[[str, bytes], bytes | None]:
    def edit(name: str, data: bytes) -> bytes | None:
        if name != "models/model.json":
            return data
        return data.replace(b'"torch.ops.aten.tanh.default"', json.dumps(target).encode())

    return edit


def _expression(name: str, data: bytes) -> bytes | None:
    if name != "models/model.json":
        return data
    evil = "__import__('os').system('touch CANARY')"
    return data.replace(b"Symbol('s", json.dumps(evil)[1:-1].encode() + b" + Symbol('s", 1)


def _keep(name: str, data: bytes) -> bytes | None:
    return data


def _sample_object(name: str, data: bytes) -> bytes | None:
    if name != "data/sample_inputs/model.pt":
        return data
    buffer = io.BytesIO()
    torch.save((((torch.zeros(1, 4),), {}), Small), buffer)  # a class: beyond what weights_only loads
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("edit", "extra", "words"),
    [
        (_pickled_weights, {}, ["as a pickle"]),
        (_keep, {"data/weights/model.pt": b"PK legacy"}, ["legacy"]),
        (_keep, {"data/aotinductor/model/model.so": b"\x7fELF"}, ["AOTInductor"]),
        (_sample_object, {}, ["sample inputs"]),
        (_operator("torch.os.system"), {}, ["'torch.os.system'", "not a torch operator"]),
        (_operator("torch.ops.aten.from_file.default"), {}, ["aten::from_file"]),
        (_expression, {}, ["shape expression"]),
    ],
)
def test_pt2_that_would_run_code_is_refused(
    api: TestClient,
    services: Services,
    programs: dict[str, Path],
    tmp_path: Path,
    edit: Callable[[str, bytes], bytes | None],
    extra: dict[str, bytes],
    words: list[str],
) -> None:
    evil = edit_zip(programs["small.pt2"], tmp_path / "evil.pt2", edit, extra)
    message = refused(api, services, "evil", evil, "unsafe_format")
    assert all(w in message for w in words), message
    assert not (Path.cwd() / "CANARY").exists()


def test_pt2_checks_accept_what_torch_writes(programs: dict[str, Path], tmp_path: Path) -> None:
    for name in ("small.pt2", "mixed.pt2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.bin").write_bytes(programs[name].read_bytes())  # any file name
        TorchRuntime.vet(tmp_path / name, LoadOptions())
