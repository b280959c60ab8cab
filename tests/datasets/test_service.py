"""Datasets without the ``training`` extra installed: a clear error, not a failure deep inside."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from modelport.datasets.service import DatasetService, require_training
from modelport.errors import ConfigError


def test_without_the_training_extra_datasets_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "pyarrow" else real(name, *args)

    assert DatasetService.bundled()  # installed here
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pyarrow: pip install 'modelport\[training\]'"):
        require_training()
    assert DatasetService.bundled() == {}
