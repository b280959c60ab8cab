"""Framework runtimes behind one interface, registered through the ``modelport.runtimes`` entry points."""

from __future__ import annotations

from modelport.runtimes.base import Runtime, Signature, TensorSpec

__all__ = ["Runtime", "Signature", "TensorSpec"]
