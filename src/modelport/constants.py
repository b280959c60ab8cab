"""Defaults shared by the server, the CLI and the SDK, named once."""

from __future__ import annotations

DEFAULT_ALIAS = "production"
"""The alias that serves a model when a request names no version."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
"""Where the CLI and the SDK look for a server when ``MODELPORT_URL`` is not set."""

SAFE_FORMATS = (
    "skops (.skops), ONNX, XGBoost JSON/UBJ, LightGBM text model, TorchScript, torch.export (.pt2), "
    "Keras 3 (.keras), a Hugging Face or sentence-transformers directory with safetensors weights"
)
"""The model formats that load without running code from the file, as error messages name them."""
