"""Artifact storage: content-addressed blobs, safe archive extraction."""

from __future__ import annotations

from modelport.storage.base import ArtifactStore
from modelport.storage.local import LocalArtifactStore

__all__ = ["ArtifactStore", "LocalArtifactStore"]
