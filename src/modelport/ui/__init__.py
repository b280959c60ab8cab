"""The web dashboard at ``/ui``: models, a model's versions, aliases, charts, drift, accuracy and alerts,
training jobs, the audit log and keys. See ``app.py`` for its routes and ``access.py`` for sign-in."""

from __future__ import annotations

from modelport.ui.app import build_app

__all__ = ["build_app"]
