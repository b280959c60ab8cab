"""Pickles: refused by default; with MODELPORT_ALLOW_PICKLE, loaded only in a confined worker process."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.runtimes.process import ProcessRuntime
from modelport.server import Services, build_app
from tests import fixtures
from tests.conftest import AUTH, make_services


class Spy:
    """Unpickling runs ``code``: what a hostile artifact would do."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (self.code,))


@pytest.fixture
def drop() -> Iterator[Path]:
    """A directory the sandboxed worker (user nobody) can write to: pytest's own tmp dirs are private."""
    path = Path(tempfile.mkdtemp(prefix="modelport-drop-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pickles_allowed(tmp_path: Path) -> Iterator[tuple[Services, TestClient]]:
    services = make_services(tmp_path / "data", allow_pickle=True)
    with TestClient(build_app(services), headers=AUTH) as client:
        yield services, client
    services.close()


def test_pickled_model_is_served_from_a_worker_process(pickles_allowed: tuple[Services, TestClient]) -> None:
    services, api = pickles_allowed
    buf = io.BytesIO()
    joblib.dump(fixtures.iris_forest(), buf, compress=3)  # joblib's compressed format
    for name, payload in (("plain", pickle.dumps(fixtures.iris_forest())), ("joblib", buf.getvalue())):
        r = api.post(f"/api/v1/models/{name}/versions", content=payload)
        assert r.status_code == 201 and (r.json()["state"], r.json()["framework"]) == ("ready", "pickle"), (
            r.text
        )
        row = {
            "inputs": [
                {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": fixtures.IRIS_X[:3].tolist()}
            ]
        }
        out = api.post(f"/v2/models/{name}/infer", json=row).json()["outputs"]
        assert out[0]["data"] == fixtures.iris_forest().predict(fixtures.IRIS_X[:3]).tolist()
        served = services.dataplane.cache.peek((name, 1))
        assert served is not None and isinstance(served.loaded.runtime, ProcessRuntime)
        assert served.loaded.runtime.pid not in (None, os.getpid())


def test_hostile_pickle_never_runs_in_the_server(
    pickles_allowed: tuple[Services, TestClient], drop: Path
) -> None:
    _, api = pickles_allowed
    canary = drop / "canary"
    code = f"import os; open({str(canary)!r}, 'w').write(str(os.getpid()))"
    r = api.post("/api/v1/models/evil/versions", content=pickle.dumps(Spy(code)))
    assert r.status_code == 201 and r.json()["state"] == "failed"  # it ran, in the worker, and is no model
    assert canary.exists() and int(canary.read_text()) != os.getpid()


@pytest.mark.skipif(os.geteuid() != 0, reason="the user switch needs a server running as root")
def test_sandboxed_worker_cannot_read_the_data_directory(
    pickles_allowed: tuple[Services, TestClient], drop: Path
) -> None:
    services, api = pickles_allowed
    canary = drop / "canary"
    key_file = services.settings.data_dir / "admin.key"
    key_file.write_text("secret")  # as a generated key would be
    code = (
        "import os\n"
        f"try:\n    found = open({str(key_file)!r}).read()\n"
        "except OSError as exc:\n    found = type(exc).__name__\n"
        f"open({str(canary)!r}, 'w').write(found + ' uid=' + str(os.getuid()))"
    )
    api.post("/api/v1/models/spy/versions", content=gzip.compress(pickle.dumps(Spy(code))))
    assert canary.read_text() == "PermissionError uid=65534"


def test_default_refuses_even_with_a_file_name_hint(tmp_path: Path) -> None:
    services = make_services(tmp_path / "data")
    with TestClient(build_app(services), headers=AUTH) as api:
        model = pickle.dumps(fixtures.iris_forest())
        r = api.post("/api/v1/models/m/versions", params={"filename": "model.skops"}, content=model)
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsafe_format"
        r = api.post("/api/v1/models/m/versions", params={"framework": "pickle"}, content=model)
        assert r.status_code == 400
    services.close()
    assert np.asarray(fixtures.IRIS_X).shape == (150, 4)
