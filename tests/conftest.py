from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelport.server import Services, build_app, build_services
from modelport.settings import Settings
from tests import fixtures

ADMIN_KEY = "mp_test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("artifacts")
    return {
        "iris.skops": fixtures.write_skops(fixtures.iris_forest(), d / "iris.skops"),
        "cancer.skops": fixtures.write_skops(fixtures.cancer_logreg(), d / "cancer.skops"),
        "cancer.onnx": fixtures.write_onnx(fixtures.cancer_logreg(), d / "cancer.onnx"),
        "iris.json": fixtures.write_xgboost(d / "iris-xgb.json"),
        "iris.ubj": fixtures.write_xgboost(d / "iris-xgb.ubj"),
        "diabetes.txt": fixtures.write_lightgbm(d / "diabetes.txt"),
        "cancer-lgbm.txt": fixtures.write_lightgbm(d / "cancer-lgbm.txt", classifier=True),
    }


IN_PROCESS_HOSTS = ["testserver", "test", "t"]  # the Host headers of in-process test clients


def make_services(data_dir: Path, *, primary: bool = True, **overrides: object) -> Services:
    overrides.setdefault("allowed_hosts", IN_PROCESS_HOSTS)
    settings = Settings(data_dir=data_dir, admin_key=ADMIN_KEY, **overrides)  # type: ignore[arg-type]
    services = build_services(settings, primary=primary)
    services.repository.runtimes.runtimes.update(fixtures.FAKES)  # type: ignore[arg-type]
    return services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = make_services(tmp_path / "data")
    yield svc
    svc.close()


@pytest.fixture
def api(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services), headers=AUTH, raise_server_exceptions=False) as client:
        yield client


def push(api: TestClient, model: str, path: Path, **params: str) -> httpx.Response:
    return api.post(
        f"/api/v1/models/{model}/versions",
        content=path.read_bytes(),
        params={"filename": path.name, **params},
        headers={"Content-Type": "application/octet-stream"},
    )


def infer_json(
    api: TestClient, model: str, tensors: dict[str, np.ndarray], datatypes: dict[str, str]
) -> dict[str, Any]:
    """One V2 JSON inference of ``tensors`` (each with its datatype); the outputs as numpy arrays."""
    body = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": datatypes[n], "data": a.reshape(-1).tolist()}
            for n, a in tensors.items()
        ]
    }
    r = api.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """Stop a process this suite started, by its own handle: SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RunningServer:
    """A real ``modelport serve`` process on 127.0.0.1, stopped by its own PID."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        verify: ssl.SSLContext | bool = True,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.verify = verify
        scheme = "https" if "--ssl-certfile" in args else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        env = {**os.environ, "MODELPORT_ADMIN_KEY": ADMIN_KEY, **(extra_env or {})}
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "modelport",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1, verify=self.verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path / "data")
    yield running
    running.stop()
